//! REST handlers for `/channels` (create, list, get, delete), `/reset`, and the browser-only
//! GET forms of create and delete. Each handler only translates HTTP to a registry message.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{body, spec, AppState};
use crate::actors::channel::{ChannelSpec, ChannelStats};
use crate::actors::registry::{ChannelInfo, Get, List};
use crate::cluster::node::{Propose, ProposeError};
use crate::cluster::state::{Applied, ChannelRecord, Command, DeleteCause};
use crate::error::ApiError;
use crate::token;

/// The public view of a channel; never contains the token.
pub fn channel_json(info: &ChannelInfo) -> Value {
    record_json(&info.record, &info.stats)
}

fn record_json(record: &ChannelRecord, stats: &ChannelStats) -> Value {
    json!({
        "id": record.id,
        "pattern": record.spec.pattern.as_str(),
        "clientLimit": record.spec.client_limit,
        "timeout": record.spec.timeout,
        "countdown": stats.countdown(record.spec.timeout),
        "clients": stats.clients.load(std::sync::atomic::Ordering::Relaxed),
        "includeSender": record.spec.include_sender,
        "createdAt": record.created_at_ms,
    })
}

fn mailbox(e: actix::MailboxError) -> ApiError {
    ApiError::Internal(format!("actor unavailable: {e}"))
}

/// Commits a command through Raft; the answer comes only after it is applied on this node.
pub async fn commit(state: &AppState, cmd: Command) -> Result<Applied, ApiError> {
    if state
        .shutting_down
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Err(ApiError::ShuttingDown);
    }
    state
        .cluster
        .send(Propose(cmd))
        .await
        .map_err(mailbox)?
        .map_err(|e| match e {
            ProposeError::UnknownMember(id) => ApiError::NodeNotFound(id.to_string()),
            e => ApiError::ClusterUnavailable(e.to_string()),
        })
}

async fn create_channel(state: &AppState, spec: ChannelSpec) -> Result<HttpResponse, ApiError> {
    let config = &state.config;
    loop {
        let token = token::random_token(config.token_length);
        let record = ChannelRecord {
            id: token::random_id(config.id_length),
            spec: spec.clone(),
            token_hash: token::hash(&token),
            created_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        match commit(state, Command::CreateChannel(record)).await? {
            Applied::Created(record) => {
                let id = &record.id;
                return Ok(HttpResponse::Created()
                    .insert_header(("Location", format!("/channels/{id}")))
                    .json(json!({
                        "message": format!("Channel {id} created"),
                        "token": token,
                        "connect": format!("/channels/{id}/connect?token={token}"),
                        "data": record_json(&record, &ChannelStats::new()),
                    })));
            }
            Applied::ChannelLimitReached(n) => return Err(ApiError::ChannelLimitReached(n)),
            Applied::Duplicate => continue,
            other => {
                return Err(ApiError::Internal(format!(
                    "unexpected apply result {other:?}"
                )))
            }
        }
    }
}

pub async fn create(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(&req, &mut payload, state.config.max_body).await?;
    let spec = spec::from_body(&bytes)?;
    create_channel(&state, spec).await
}

pub async fn create_from_query(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let spec = spec::from_query(&query)?;
    create_channel(&state, spec).await
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let all = state.registry.send(List).await.map_err(mailbox)?;
    let data: Vec<Value> = all.iter().map(|c| channel_json(c)).collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let id = channel_id(&req);
    match state
        .registry
        .send(Get(id.clone()))
        .await
        .map_err(mailbox)?
    {
        Some(handle) => Ok(HttpResponse::Ok().json(json!({ "data": channel_json(&handle.info) }))),
        None => Err(ApiError::ChannelNotFound(id)),
    }
}

pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = channel_id(&req);
    let cmd = Command::DeleteChannel {
        id: id.clone(),
        cause: DeleteCause::Deleted,
    };
    match commit(&state, cmd).await? {
        Applied::Deleted { .. } => {
            Ok(HttpResponse::Ok().json(json!({ "message": format!("Channel {id} deleted") })))
        }
        _ => Err(ApiError::ChannelNotFound(id)),
    }
}

pub async fn reset(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let n = match commit(&state, Command::Reset).await? {
        Applied::Reset(ids) => ids.len(),
        _ => 0,
    };
    Ok(
        HttpResponse::Ok()
            .json(json!({ "message": format!("{n} channels deleted"), "deleted": n })),
    )
}

pub fn channel_id(req: &HttpRequest) -> String {
    req.match_info().get("id").unwrap_or_default().to_owned()
}
