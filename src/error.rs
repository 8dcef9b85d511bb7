//! The one error type the API returns, and the single place that maps errors to HTTP status,
//! JSON body `{"message", "error"}` and WebSocket close codes.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("The request body is not a JSON object: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("The query string could not be read: {0}")]
    InvalidQuery(String),
    #[error("The request path cannot be normalised: {0}")]
    InvalidPath(&'static str),
    #[error("This route only accepts WebSocket upgrade requests (GET with Upgrade: websocket)")]
    NotWebSocket,
    #[error(
        "A valid API token is required (?auth=, Authorization: Bearer, or \"auth\" in the body)"
    )]
    Unauthorized,
    #[error("The channel token is missing or wrong")]
    InvalidToken,
    #[error("No channel with id {0:?}")]
    ChannelNotFound(String),
    #[error("No route for {0}")]
    NotFound(String),
    #[error("No cluster node with id {0:?}")]
    NodeNotFound(String),
    #[error("Method {0} is not allowed on this route")]
    MethodNotAllowed(String),
    #[error("This cross-origin request is not allowed (WRS_CORS_ORIGINS): {0}")]
    CorsRejected(String),
    #[error("Publishing over HTTP is for pub-sub and push-pull channels; this one is {0}")]
    PatternUnsupported(String),
    #[error("A text body (text/* or JSON) must be UTF-8: {0}")]
    InvalidText(String),
    #[error("The channel's client limit of {0} is reached")]
    ClientLimitReached(i64),
    #[error("The request body exceeds the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("The cluster cannot take writes right now: {0}")]
    ClusterUnavailable(String),
    #[error("Joining failed: {0}")]
    JoinFailed(String),
    #[error("{0}")]
    ClusterConflict(String),
    #[error("The service holds its maximum of {0} channels")]
    ChannelLimitReached(usize),
    #[error("The server is shutting down")]
    ShuttingDown,
    #[error("Internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The stable machine-readable code of the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::InvalidPath(_) => "invalid_path",
            ApiError::NotWebSocket => "not_websocket",
            ApiError::Unauthorized => "unauthorized",
            ApiError::InvalidToken => "invalid_token",
            ApiError::ChannelNotFound(_) => "channel_not_found",
            ApiError::NotFound(_) => "not_found",
            ApiError::NodeNotFound(_) => "node_not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::CorsRejected(_) => "cors_rejected",
            ApiError::PatternUnsupported(_) => "pattern_unsupported",
            ApiError::InvalidText(_) => "invalid_utf8",
            ApiError::ClientLimitReached(_) => "client_limit_reached",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::ClusterUnavailable(_) => "cluster_unavailable",
            ApiError::JoinFailed(_) => "join_failed",
            ApiError::ClusterConflict(_) => "cluster_conflict",
            ApiError::ChannelLimitReached(_) => "channel_limit_reached",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidField(_)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidPath(_)
            | ApiError::InvalidText(_)
            | ApiError::NotWebSocket => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::InvalidToken | ApiError::CorsRejected(_) => StatusCode::FORBIDDEN,
            ApiError::ChannelNotFound(_) | ApiError::NotFound(_) | ApiError::NodeNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::ClientLimitReached(_) | ApiError::PatternUnsupported(_) => {
                StatusCode::CONFLICT
            }
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::JoinFailed(_) => StatusCode::BAD_GATEWAY,
            ApiError::ClusterConflict(_) => StatusCode::CONFLICT,
            ApiError::ClusterUnavailable(_)
            | ApiError::ChannelLimitReached(_)
            | ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized) {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(json!({ "message": self.to_string(), "error": self.code() }))
    }
}

/// Why the server closes a WebSocket; each maps to one close code and a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    ChannelDeleted,
    ChannelTimedOut,
    SlowConsumer,
    MessageTooBig,
    ShuttingDown,
    PingTimeout,
    ProtocolError,
    InvalidUtf8,
    Internal,
}

impl CloseCause {
    pub fn code(self) -> u16 {
        match self {
            CloseCause::ChannelDeleted => 4000,
            CloseCause::ChannelTimedOut => 4001,
            CloseCause::SlowConsumer => 4008,
            CloseCause::MessageTooBig => 1009,
            CloseCause::ShuttingDown | CloseCause::PingTimeout => 1001,
            CloseCause::ProtocolError => 1002,
            CloseCause::InvalidUtf8 => 1007,
            CloseCause::Internal => 1011,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            CloseCause::ChannelDeleted => "channel deleted",
            CloseCause::ChannelTimedOut => "channel timed out",
            CloseCause::SlowConsumer => "slow consumer",
            CloseCause::MessageTooBig => "message too big",
            CloseCause::ShuttingDown => "server shutting down",
            CloseCause::PingTimeout => "ping timeout",
            CloseCause::ProtocolError => "protocol error",
            CloseCause::InvalidUtf8 => "invalid utf-8",
            CloseCause::Internal => "internal error",
        }
    }
}

/// Every error the peer port answers, as `wire::ErrorBody` JSON (the peer reads it back).
#[derive(Debug, Error)]
pub enum PeerError {
    #[error("wrong or missing cluster secret")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("no such channel")]
    ChannelNotFound,
    #[error("client limit reached")]
    ClientLimitReached(i64),
    #[error("the channel's pattern does not take server-side publishes")]
    PatternUnsupported,
    #[error("not the leader")]
    NotLeader(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl PeerError {
    pub fn code(&self) -> &'static str {
        match self {
            PeerError::Unauthorized => "unauthorized",
            PeerError::BadRequest(_) => "bad_request",
            PeerError::ChannelNotFound => "channel_not_found",
            PeerError::ClientLimitReached(_) => "client_limit_reached",
            PeerError::PatternUnsupported => "pattern_unsupported",
            PeerError::NotLeader(_) => "not_leader",
            PeerError::Unavailable(_) => "unavailable",
            PeerError::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for PeerError {
    fn status_code(&self) -> StatusCode {
        match self {
            PeerError::Unauthorized => StatusCode::UNAUTHORIZED,
            PeerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PeerError::ChannelNotFound => StatusCode::NOT_FOUND,
            PeerError::ClientLimitReached(_) | PeerError::PatternUnsupported => {
                StatusCode::CONFLICT
            }
            PeerError::NotLeader(_) => StatusCode::MISDIRECTED_REQUEST,
            PeerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            PeerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({ "message": self.to_string(), "error": self.code() });
        match self {
            PeerError::ClientLimitReached(limit) => body["limit"] = json!(limit),
            PeerError::NotLeader(leader) => body["leader"] = json!(leader),
            _ => {}
        }
        HttpResponse::build(self.status_code()).json(body)
    }
}
