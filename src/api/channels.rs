//! REST handlers for `/channels` (create, list, get, delete), `/reset`, and the browser-only
//! GET forms of create and delete. Each handler only translates HTTP to a registry message.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{spec, AppState};
use crate::actors::channel::ChannelStats;
use crate::actors::registry::{ChannelHandle, ChannelInfo, Get, List, Owner};
use crate::body;
use crate::cluster::node::{CatchUp, Propose, ProposeError};
use crate::cluster::state::{Applied, Command};
use crate::error::ApiError;
use crate::model::{ChannelRecord, ChannelSpec, DeleteCause, Live};
use crate::token;

fn local_live(stats: &ChannelStats) -> Live {
    Live {
        clients: stats.clients.load(std::sync::atomic::Ordering::Relaxed),
        idle_ms: stats.idle_ms(),
    }
}

/// The public view of a channel; never contains the token.
fn record_json(record: &ChannelRecord, live: Live) -> Value {
    let timeout = record.spec.timeout;
    let countdown = if timeout < 0 {
        -1
    } else {
        (timeout as u64).saturating_sub(live.idle_ms) as i64
    };
    json!({
        "id": record.id,
        "pattern": record.spec.pattern.as_str(),
        "clientLimit": record.spec.client_limit,
        "timeout": timeout,
        "countdown": countdown,
        "clients": live.clients,
        "includeSender": record.spec.include_sender,
        "history": record.spec.history,
        "createdAt": record.created_at_ms,
    })
}

/// `ws(s)://host:port` of the node a client of a channel should connect to: with
/// `WRS_CONNECT_TO_OWNER`, the channel's owner `owner` (`None` = this node) as the members
/// advertise it; otherwise, or when the owner's address is not known here, this node's.
fn connect_base(state: &AppState, owner: Option<u64>) -> String {
    let config = &state.config;
    if !config.connect_to_owner {
        return config.public_ws_base();
    }
    owner
        .and_then(|o| state.relay.api_of(o))
        .map_or_else(|| config.public_ws_base(), |api| config.ws_base_of(&api))
}

/// With `WRS_CONNECT_TO_OWNER`, a channel view's `url`: the WebSocket URL of its connect path at
/// its owner, without the token (which is handed out once, at creation, and not stored):
/// append `?token=...` to open it.
fn with_owner_url(state: &AppState, mut view: Value, owner: Option<u64>) -> Value {
    if state.config.connect_to_owner {
        let url = match view["id"].as_str() {
            Some(id) => format!("{}/channels/{id}/connect", connect_base(state, owner)),
            None => return view,
        };
        if let Some(fields) = view.as_object_mut() {
            fields.insert("url".into(), Value::String(url));
        }
    }
    view
}

/// Views of channels, with live numbers from each channel's owner node (one request per
/// owner); a channel whose owner does not answer shows this node's numbers.
async fn views(state: &AppState, channels: Vec<(Arc<ChannelInfo>, Option<u64>)>) -> Vec<Value> {
    let mut by_owner: HashMap<u64, Vec<String>> = HashMap::new();
    for (info, owner) in &channels {
        if let Some(owner) = owner {
            by_owner
                .entry(*owner)
                .or_default()
                .push(info.record.id.clone());
        }
    }
    let mut remote: HashMap<String, Live> = HashMap::new();
    for (owner, ids) in by_owner {
        if let Some(live) = state.relay.live(owner, &ids).await {
            remote.extend(live);
        }
    }
    channels
        .iter()
        .map(|(info, owner)| {
            let live = remote
                .get(&info.record.id)
                .copied()
                .unwrap_or_else(|| local_live(&info.stats));
            with_owner_url(state, record_json(&info.record, live), *owner)
        })
        .collect()
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
            created_at_ms: crate::model::now_ms(),
        };
        match commit(state, Command::CreateChannel(record)).await? {
            Applied::Created(record) => {
                let id = &record.id;
                let connect = format!("/channels/{id}/connect?token={token}");
                let owner = if config.connect_to_owner {
                    state
                        .registry
                        .send(Owner(id.clone()))
                        .await
                        .map_err(mailbox)?
                } else {
                    None
                };
                let data = record_json(
                    &record,
                    Live {
                        clients: 0,
                        idle_ms: 0,
                    },
                );
                return Ok(HttpResponse::Created()
                    .insert_header(("Location", format!("/channels/{id}")))
                    .json(json!({
                        "message": format!("Channel {id} created"),
                        "token": token,
                        "url": format!("{}{connect}", connect_base(state, owner)),
                        "connect": connect,
                        "data": with_owner_url(state, data, owner),
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
    let data = views(&state, all).await;
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let id = channel_id(&req);
    match lookup(&state, &id).await? {
        Some(handle) => {
            let view = views(&state, vec![(handle.info, handle.owner)]).await;
            Ok(HttpResponse::Ok().json(json!({ "data": view.into_iter().next() })))
        }
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

/// Looks a channel up on this node; on a miss, first catches up with the cluster (a channel
/// just created through another node may not be applied here yet), then looks again.
pub async fn lookup(state: &AppState, id: &str) -> Result<Option<ChannelHandle>, ApiError> {
    if let Some(handle) = state
        .registry
        .send(Get(id.to_owned()))
        .await
        .map_err(mailbox)?
    {
        return Ok(Some(handle));
    }
    if !state.cluster.send(CatchUp).await.unwrap_or(false) {
        return Ok(None);
    }
    state
        .registry
        .send(Get(id.to_owned()))
        .await
        .map_err(mailbox)
}

pub fn channel_id(req: &HttpRequest) -> String {
    req.match_info().get("id").unwrap_or_default().to_owned()
}
