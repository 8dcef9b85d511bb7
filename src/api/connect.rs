//! The WebSocket upgrade at `/channels/{id}/connect`: channel → token → `history=K` →
//! handshake → client limit (API auth already ran as middleware), then a `Session` actor and
//! the outbox body.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, AsyncContext};
use actix_http::ws::{hash_key, verify_handshake};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::channels::{self, channel_id};
use super::AppState;
use crate::actors::channel::Join;
use crate::actors::history::MAX_HISTORY;
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
    let history = match query.as_ref().and_then(|q| q.get("history")) {
        None => 0,
        Some(k) => parse_history(k)?,
    };
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
            history,
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

/// `history=K`: a whole number ≥ 0 (digits only); more than any channel keeps means all.
fn parse_history(raw: &str) -> Result<usize, ApiError> {
    let invalid = || {
        ApiError::InvalidQuery(format!(
            "\"history\" must be a whole number of messages (0 or more), got {raw:?}"
        ))
    };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    // Digits only, so the only failure left is a number too large for u64: all of it.
    let k = raw.parse::<u64>().unwrap_or(u64::MAX);
    Ok(k.min(u64::from(MAX_HISTORY)) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_parameters_are_whole_numbers() {
        assert_eq!(parse_history("0").unwrap(), 0);
        assert_eq!(parse_history("25").unwrap(), 25);
        assert_eq!(parse_history("99999999999999999999999").unwrap(), 1000);
        for bad in ["", "-1", "1.5", "abc", " 3", "+3"] {
            assert!(parse_history(bad).is_err(), "{bad:?}");
        }
    }
}
