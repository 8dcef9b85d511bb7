//! REST handlers for `/cluster` (view, join, remove) and the health probes.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::actors::registry::List;
use crate::cluster::membership;
use crate::cluster::node::{GetView, ProposeError, RemoveMember};
use crate::cluster::view_body;
use crate::error::ApiError;

fn mailbox(e: actix::MailboxError) -> ApiError {
    ApiError::Internal(format!("raft node unavailable: {e}"))
}

pub async fn view(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = state.cluster.send(GetView).await.map_err(mailbox)?;
    Ok(HttpResponse::Ok().json(json!({ "data": view_body(&view) })))
}

pub async fn join(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let address = req
        .match_info()
        .get("address")
        .unwrap_or_default()
        .to_owned();
    if address.is_empty() || !address.contains(':') {
        return Err(ApiError::InvalidField(format!(
            "the address must be host:port of a member's API, got {address:?}"
        )));
    }
    if state.config.cluster_secret.is_none() && !crate::config::is_loopback_address(&address) {
        return Err(ApiError::InvalidField(format!(
            "joining {address} needs WRS_CLUSTER_SECRET on this node: without it the peer port \
             listens on loopback only and nothing could prove {address} is a wrs node"
        )));
    }
    let view = state.cluster.send(GetView).await.map_err(mailbox)?;
    if view.nodes.len() > 1 {
        return Err(ApiError::ClusterConflict(
            "This node is already part of a cluster; remove it first".into(),
        ));
    }
    let channels = state.registry.send(List).await.map_err(mailbox)?;
    if !channels.is_empty() {
        return Err(ApiError::ClusterConflict(format!(
            "This node has {} channels of its own; delete them (DELETE /reset) before joining",
            channels.len()
        )));
    }
    let access = membership::ApiAccess {
        scheme: state.config.http_scheme().to_owned(),
        token: state.config.auth.then(|| state.config.auth_token.clone()),
        secret: state.config.cluster_secret.clone(),
    };
    membership::join_via(&address, &access, &view.me, &state.cluster)
        .await
        .map_err(ApiError::JoinFailed)?;
    let view = state.cluster.send(GetView).await.map_err(mailbox)?;
    Ok(HttpResponse::Ok().json(json!({
        "message": format!("Joined the cluster of {address}"),
        "data": view_body(&view),
    })))
}

pub async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = req.match_info().get("nodeId").unwrap_or_default();
    let id: u64 = raw
        .parse()
        .map_err(|_| ApiError::NodeNotFound(raw.to_owned()))?;
    match state
        .cluster
        .send(RemoveMember(id))
        .await
        .map_err(mailbox)?
    {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({ "message": format!("Node {id} removed") }))),
        Err(ProposeError::UnknownMember(_)) => Err(ApiError::NodeNotFound(raw.to_owned())),
        Err(e) => Err(ApiError::ClusterUnavailable(e.to_string())),
    }
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready = not shutting down and the cluster has a leader (writes can commit).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let unavailable = |message: &str, error: &str| {
        HttpResponse::ServiceUnavailable().json(json!({ "message": message, "error": error }))
    };
    if state
        .shutting_down
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return unavailable("The server is shutting down", "shutting_down");
    }
    match state.cluster.send(GetView).await {
        Ok(view) if view.leader.is_some() => HttpResponse::Ok().json(json!({ "status": "ok" })),
        _ => unavailable("The cluster has no leader", "no_leader"),
    }
}
