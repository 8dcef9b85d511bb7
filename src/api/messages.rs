//! Server-side publish (`POST /channels/{id}/messages`) and presence (`GET
//! /channels/{id}/clients`), both with the channel's token (`?token=` or `X-Channel-Token`).
//! Each handler checks, reads a bounded body, and asks the channel actor, which answers itself
//! (owner) or asks the owner node (proxy).

use std::collections::HashMap;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use bytestring::ByteString;
use serde_json::json;

use super::channels::{self, channel_id};
use super::AppState;
use crate::actors::channel::{ListClients, PublishHttp};
use crate::actors::registry::ChannelHandle;
use crate::body;
use crate::error::ApiError;
use crate::model::{ChannelRefused, Data, Pattern};
use crate::token;

/// The header that may carry the channel's token (`Authorization` is the API token's).
pub const CHANNEL_TOKEN_HEADER: &str = "x-channel-token";

/// The channel, if it exists (`404`) and the request presents its token (`403`).
async fn authorised_channel(
    req: &HttpRequest,
    state: &AppState,
) -> Result<ChannelHandle, ApiError> {
    let id = channel_id(req);
    let handle = channels::lookup(state, &id)
        .await?
        .ok_or(ApiError::ChannelNotFound(id))?;
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok();
    let from_query = query.as_ref().and_then(|q| q.get("token")).cloned();
    let from_header = req
        .headers()
        .get(CHANNEL_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned());
    let presented = from_query.or(from_header);
    if !presented.is_some_and(|t| token::matches_hash(&t, &handle.info.record.token_hash)) {
        return Err(ApiError::InvalidToken);
    }
    Ok(handle)
}

/// Whether a body of this `Content-Type` becomes a text frame: `text/*`, `application/json`
/// and any `+json` type. Anything else (or none) is binary.
pub fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime.starts_with("text/") || mime == "application/json" || mime.ends_with("+json")
}

fn refused(id: String, pattern: Pattern, e: ChannelRefused) -> ApiError {
    match e {
        ChannelRefused::PatternUnsupported => ApiError::PatternUnsupported(pattern.to_string()),
        ChannelRefused::Closed => ApiError::ChannelNotFound(id),
        ChannelRefused::Unavailable => ApiError::ClusterUnavailable(
            "the node that sequences this channel cannot be reached".into(),
        ),
    }
}

/// `POST /channels/{id}/messages`: the body, delivered by the channel's pattern as a message
/// from no client. `202 {"data": {"delivered": n}}`.
pub async fn publish(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let handle = authorised_channel(&req, &state).await?;
    let pattern = handle.info.record.spec.pattern;
    if !matches!(pattern, Pattern::PubSub | Pattern::PushPull) {
        return Err(ApiError::PatternUnsupported(pattern.to_string()));
    }
    let bytes = body::read(&req, &mut payload, state.config.max_message_size).await?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let data = if is_text(content_type) {
        Data::Text(ByteString::try_from(bytes).map_err(|e| ApiError::InvalidText(e.to_string()))?)
    } else {
        Data::Binary(bytes)
    };
    let sent = handle.addr.send(PublishHttp {
        data,
        forwarded: false,
    });
    let id = handle.info.record.id.clone();
    match sent.await {
        Ok(Ok(delivered)) => {
            Ok(HttpResponse::Accepted().json(json!({ "data": { "delivered": delivered } })))
        }
        Ok(Err(e)) => Err(refused(id, pattern, e)),
        Err(_) => Err(ApiError::ChannelNotFound(id)),
    }
}

/// `GET /channels/{id}/clients`: the connected clients across the cluster,
/// `{"data": [{"id", "connectedAt", "node"}]}` (`connectedAt`: ms since the Unix epoch).
pub async fn clients(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let handle = authorised_channel(&req, &state).await?;
    let (id, pattern) = (
        handle.info.record.id.clone(),
        handle.info.record.spec.pattern,
    );
    match handle.addr.send(ListClients { forwarded: false }).await {
        Ok(Ok(list)) => Ok(HttpResponse::Ok().json(json!({ "data": list }))),
        Ok(Err(e)) => Err(refused(id, pattern, e)),
        Err(_) => Err(ApiError::ChannelNotFound(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_content_types_are_text_the_rest_binary() {
        for ct in [
            "text/plain",
            "text/plain; charset=utf-8",
            "Text/HTML",
            "application/json",
            "application/json; charset=utf-8",
            "application/ld+json",
            "application/vnd.api+json",
        ] {
            assert!(is_text(Some(ct)), "{ct}");
        }
        for ct in [
            "application/octet-stream",
            "image/png",
            "application/jsonx",
            "",
        ] {
            assert!(!is_text(Some(ct)), "{ct}");
        }
        assert!(!is_text(None));
    }
}
