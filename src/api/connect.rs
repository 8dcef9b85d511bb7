//! The WebSocket upgrade at `/channels/{id}/connect`: channel → token → handshake → client
//! limit (API auth already ran as middleware), then a `Session` actor and the outbox body.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, AsyncContext};
use actix_http::ws::{hash_key, verify_handshake};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::channels::{self, channel_id};
use super::AppState;
use crate::actors::channel::Join;
use crate::actors::outbox::Outbox;
use crate::actors::session::Session;
use crate::error::ApiError;
use crate::model::{ClientId, JoinRefused};
use crate::token;

pub async fn connect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = channel_id(&req);
    let handle = channels::lookup(&state, &id)
        .await?
        .ok_or_else(|| ApiError::ChannelNotFound(id.clone()))?;

    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok();
    let presented = query
        .as_ref()
        .and_then(|q| q.get("token"))
        .map(String::as_str);
    if !presented.is_some_and(|t| token::matches_hash(t, &handle.info.record.token_hash)) {
        return Err(ApiError::InvalidToken);
    }
    verify_handshake(req.head()).map_err(|_| ApiError::NotWebSocket)?;
    let accept = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|key| hash_key(key.as_bytes()))
        .ok_or(ApiError::NotWebSocket)?;

    let client: ClientId = uuid::Uuid::new_v4().simple().to_string().into();
    let outbox = Outbox::new(state.config.client_queue, state.config.client_queue_bytes);
    let joined = handle
        .addr
        .send(Join {
            id: client.clone(),
            outbox: Arc::clone(&outbox),
        })
        .await;
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(JoinRefused::LimitReached(n))) => return Err(ApiError::ClientLimitReached(n)),
        Ok(Err(JoinRefused::Closed)) | Err(_) => return Err(ApiError::ChannelNotFound(id)),
        Ok(Err(JoinRefused::Unavailable)) => {
            return Err(ApiError::ClusterUnavailable(
                "the node that sequences this channel cannot be reached".into(),
            ))
        }
    }
    log::debug!("client {client} joined channel {id}");

    let session = Session::new(
        client,
        handle.addr,
        Arc::clone(&handle.info.stats),
        Arc::clone(&outbox),
        state.session_limits,
    );
    Session::create(move |ctx| {
        ctx.add_stream(payload);
        session
    });
    Ok(HttpResponse::SwitchingProtocols()
        .upgrade("websocket")
        .insert_header((header::SEC_WEBSOCKET_ACCEPT, &accept[..]))
        .streaming(outbox.body()))
}
