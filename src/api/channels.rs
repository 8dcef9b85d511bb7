//! REST handlers for `/channels` (create, list, get, delete), `/reset`, and the browser-only
//! GET forms of create and delete. Each handler only translates HTTP to a registry message.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{body, spec, AppState};
use crate::actors::channel::ChannelSpec;
use crate::actors::registry::{ChannelInfo, Create, CreateRefused, Delete, Get, List, Reset};
use crate::error::ApiError;

/// The public view of a channel; never contains the token.
pub fn channel_json(info: &ChannelInfo) -> Value {
    json!({
        "id": info.id,
        "pattern": info.spec.pattern.as_str(),
        "clientLimit": info.spec.client_limit,
        "timeout": info.spec.timeout,
        "countdown": info.stats.countdown(info.spec.timeout),
        "clients": info.stats.clients.load(std::sync::atomic::Ordering::Relaxed),
        "includeSender": info.spec.include_sender,
        "createdAt": info.created_at_ms,
    })
}

fn mailbox(e: actix::MailboxError) -> ApiError {
    ApiError::Internal(format!("registry unavailable: {e}"))
}

async fn create_channel(state: &AppState, spec: ChannelSpec) -> Result<HttpResponse, ApiError> {
    let created = state
        .registry
        .send(Create(spec))
        .await
        .map_err(mailbox)?
        .map_err(|e| match e {
            CreateRefused::LimitReached(n) => ApiError::ChannelLimitReached(n),
            CreateRefused::ShuttingDown => ApiError::ShuttingDown,
        })?;
    let id = &created.info.id;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/channels/{id}")))
        .json(json!({
            "message": format!("Channel {id} created"),
            "token": created.token,
            "connect": format!("/channels/{id}/connect?token={}", created.token),
            "data": channel_json(&created.info),
        })))
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
    if state
        .registry
        .send(Delete(id.clone()))
        .await
        .map_err(mailbox)?
    {
        Ok(HttpResponse::Ok().json(json!({ "message": format!("Channel {id} deleted") })))
    } else {
        Err(ApiError::ChannelNotFound(id))
    }
}

pub async fn reset(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let n = state.registry.send(Reset).await.map_err(mailbox)?;
    Ok(
        HttpResponse::Ok()
            .json(json!({ "message": format!("{n} channels deleted"), "deleted": n })),
    )
}

pub fn channel_id(req: &HttpRequest) -> String {
    req.match_info().get("id").unwrap_or_default().to_owned()
}
