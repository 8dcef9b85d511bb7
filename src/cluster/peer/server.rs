//! The peer port (`WRS_NODE_PORT`): every route a peer calls, behind one authentication check
//! that runs before a byte of the body is read. `GET /link` upgrades to a WebSocket that
//! carries `wire::Frame`s (Raft messages to the Raft node, relay records to channels);
//! `/join`, `/relay/join`, `/relay/live` and `/relay/clients` are typed JSON
//! request/response; `/relay/publish` takes a bincode body (`wire::PublishRequest`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_ws::Message as WsMessage;
use bytestring::ByteString;
use futures_util::StreamExt;

use super::proof::{self, Verifier};
use super::wire::{
    raft_messages, ClientsQuery, Frame, JoinChannel, LiveQuery, PublishRequest, Published,
    MAX_FRAME,
};
use super::{NODE_HEADER, PEER_HEADER};
use crate::actors::channel::{
    Channel, ChannelStats, DeliverLocal, JoinRemote, Leave, ListClients, Publish, PublishHttp,
};
use crate::actors::registry::{ChannelHandle, Get, List, Registry};
use crate::cluster::node::{AddMember, CatchUp, ProposeError, RaftNode, Step};
use crate::error::PeerError;
use crate::model::{ChannelRefused, Data, JoinRefused, Live, Member};

/// A link that delivers nothing (not even the client's keep-alive Ping, sent every
/// `client::PING_EVERY`) for this long is closed. Closing matters beyond tidiness: frames a
/// cut-off peer wrote into its socket would otherwise arrive when the network heals — a
/// forwarded proposal long after its proposer answered 503. Once this end has closed, the
/// kernel answers such late segments with a reset instead of handing them to us.
const LINK_SILENCE: Duration = Duration::from_secs(2);

/// JSON peer bodies (members, joins, channel id lists) stay far below this.
const MAX_JSON_BODY: usize = 1 << 20;

struct PeerState {
    node: Addr<RaftNode>,
    registry: Addr<Registry>,
    /// Checks proofs of `WRS_CLUSTER_SECRET`; `None` = no secret (loopback-only peer port).
    verifier: Option<Verifier>,
    /// `WRS_MAX_MESSAGE_SIZE`: bounds a forwarded server-side publish.
    max_message: usize,
}

/// The one authentication check of the peer port: a proof of the secret bound to this
/// request's method, path and claimed node id (`proof`), checked before the body is read.
fn authenticate(req: &HttpRequest, state: &PeerState) -> Result<(), PeerError> {
    let Some(verifier) = &state.verifier else {
        return Ok(());
    };
    let presented = header(req, proof::AUTH_HEADER);
    let node = header(req, NODE_HEADER).unwrap_or("");
    verifier
        .verify(presented, req.method().as_str(), req.path(), node)
        .map_err(|e| {
            log::debug!("peer: refused {} {}: {e}", req.method(), req.path());
            PeerError::Unauthorized
        })
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `GET /link`: a peer's long-lived link. Who is talking comes from the upgrade's headers.
async fn link(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<PeerState>,
) -> Result<HttpResponse, PeerError> {
    authenticate(&req, &state)?;
    let from = header(&req, NODE_HEADER)
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| PeerError::BadRequest(format!("missing {NODE_HEADER}")))?;
    let from_addr = header(&req, PEER_HEADER)
        .ok_or_else(|| PeerError::BadRequest(format!("missing {PEER_HEADER}")))?
        .to_owned();
    let (res, session, stream) =
        actix_ws::handle(&req, body).map_err(|e| PeerError::BadRequest(e.to_string()))?;
    let stream = stream.max_frame_size(MAX_FRAME);
    let state = state.into_inner();
    actix_rt::spawn(async move {
        let mut stream = stream;
        let mut inbound = Inbound {
            from,
            from_addr,
            state,
            channels: HashMap::new(),
        };
        // The session answers the stream; dropping it would end the link early.
        let session = session;
        loop {
            let Ok(next) = tokio::time::timeout(LINK_SILENCE, stream.next()).await else {
                log::info!("peer: link from node {from} silent for {LINK_SILENCE:?}; closing it");
                break;
            };
            let Some(msg) = next else { break };
            match msg {
                Ok(WsMessage::Binary(bytes)) => match Frame::decode(&bytes) {
                    Ok(frame) => inbound.dispatch(frame).await,
                    Err(e) => {
                        log::warn!("peer: node {from} sent {e}; closing its link");
                        break;
                    }
                },
                Ok(WsMessage::Close(_)) => break,
                Ok(_) => {}
                Err(e) => {
                    log::info!("peer: link from node {from} failed: {e}");
                    break;
                }
            }
        }
        let _ = session.close(None).await;
    });
    Ok(res)
}

/// The receiving end of one link: hands frames to the Raft node or to channel actors.
struct Inbound {
    from: u64,
    from_addr: String,
    state: Arc<PeerState>,
    /// Channel actors (and their shared numbers) already looked up on this link.
    channels: HashMap<String, (Addr<Channel>, Arc<ChannelStats>)>,
}

impl Inbound {
    async fn dispatch(&mut self, frame: Frame) {
        let channel = match frame {
            Frame::Raft(parts) => {
                match raft_messages(&parts) {
                    Ok(msgs) => self.state.node.do_send(Step {
                        from: self.from,
                        from_addr: self.from_addr.clone(),
                        msgs,
                    }),
                    Err(e) => log::warn!("peer: node {} sent {e}", self.from),
                }
                return;
            }
            Frame::Publish { ref channel, .. }
            | Frame::Leave { ref channel, .. }
            | Frame::Deliver { ref channel, .. } => channel.clone(),
        };
        let Some((addr, stats)) = self.channel(channel).await else {
            return;
        };
        match frame {
            Frame::Publish {
                from,
                text,
                payload,
                ..
            } => {
                let data = if text {
                    match ByteString::try_from(payload) {
                        Ok(t) => Data::Text(t),
                        Err(_) => return,
                    }
                } else {
                    Data::Binary(payload)
                };
                // Waiting for the channel's inbox pauses this link: backpressure on the peer.
                let Some(reserved) = stats.inbox.reserve(data.len()).await else {
                    return;
                };
                addr.do_send(Publish {
                    from: from.into(),
                    data,
                    reserved,
                });
            }
            Frame::Leave { client, .. } => addr.do_send(Leave { id: client.into() }),
            Frame::Deliver { to, frame, .. } => addr.do_send(DeliverLocal {
                from: self.from,
                to: to.into_iter().map(Into::into).collect(),
                frame,
            }),
            Frame::Raft(_) => {}
        }
    }

    async fn channel(&mut self, id: String) -> Option<(Addr<Channel>, Arc<ChannelStats>)> {
        if let Some(found) = self.channels.get(&id).filter(|(a, _)| a.connected()) {
            return Some(found.clone());
        }
        let handle = self.state.registry.send(Get(id.clone())).await.ok()??;
        let found = (handle.addr, Arc::clone(&handle.info.stats));
        self.channels.insert(id, found.clone());
        Some(found)
    }
}

/// `POST /join`: a new node asks the leader to add it.
async fn join(
    req: HttpRequest,
    state: web::Data<PeerState>,
    mut body: web::Payload,
) -> Result<HttpResponse, PeerError> {
    authenticate(&req, &state)?;
    let member: Member = read_json(&req, &mut body).await?;
    match state.node.send(AddMember(member)).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(serde_json::json!({ "message": "joined" }))),
        Ok(Err(ProposeError::NotLeader(leader))) => Err(PeerError::NotLeader(leader)),
        Ok(Err(e)) => Err(PeerError::Unavailable(e.to_string())),
        Err(e) => Err(PeerError::Internal(e.to_string())),
    }
}

/// `POST /relay/join`: a proxy node asks this (owner) node to admit one of its clients.
async fn join_channel(
    req: HttpRequest,
    state: web::Data<PeerState>,
    mut body: web::Payload,
) -> Result<HttpResponse, PeerError> {
    authenticate(&req, &state)?;
    let body: JoinChannel = read_json(&req, &mut body).await?;
    let handle = find(&state, &body.channel).await?;
    let join = JoinRemote {
        id: body.client.into(),
        node: body.node,
        connected_at_ms: body.connected_at_ms,
        history: body.history,
    };
    match handle.addr.send(join).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(serde_json::json!({ "message": "joined" }))),
        Ok(Err(JoinRefused::LimitReached(limit))) => Err(PeerError::ClientLimitReached(limit)),
        Ok(Err(JoinRefused::Closed)) | Err(_) => Err(PeerError::ChannelNotFound),
        Ok(Err(JoinRefused::Unavailable)) => {
            Err(PeerError::Unavailable("the channel's owner moved".into()))
        }
    }
}

/// The channel `id` on this node; on a miss, after catching up with the log (the asking node
/// may have applied the create before this one did).
async fn find(state: &PeerState, id: &str) -> Result<ChannelHandle, PeerError> {
    let get = || state.registry.send(Get(id.to_owned()));
    let mut found = get().await.ok().flatten();
    if found.is_none() && state.node.send(CatchUp).await.unwrap_or(false) {
        found = get().await.ok().flatten();
    }
    found.ok_or(PeerError::ChannelNotFound)
}

fn channel_refused(e: ChannelRefused) -> PeerError {
    match e {
        ChannelRefused::PatternUnsupported => PeerError::PatternUnsupported,
        ChannelRefused::Closed => PeerError::ChannelNotFound,
        ChannelRefused::Unavailable => PeerError::Unavailable("the channel's owner moved".into()),
    }
}

/// `POST /relay/publish`: a server-side publish another node received for a channel this
/// node sequences. The body is bounded by `WRS_MAX_MESSAGE_SIZE` plus the envelope.
async fn publish(
    req: HttpRequest,
    state: web::Data<PeerState>,
    mut body: web::Payload,
) -> Result<HttpResponse, PeerError> {
    authenticate(&req, &state)?;
    let limit = state.max_message.saturating_add(4096);
    let bytes = crate::body::read(&req, &mut body, limit)
        .await
        .map_err(|e| PeerError::BadRequest(e.to_string()))?;
    let msg = PublishRequest::decode(&bytes)
        .map_err(|e| PeerError::BadRequest(format!("unreadable body: {e}")))?;
    if msg.payload.len() > state.max_message {
        return Err(PeerError::BadRequest("the message is too large".into()));
    }
    let data = if msg.text {
        Data::Text(
            ByteString::try_from(msg.payload)
                .map_err(|_| PeerError::BadRequest("a text message must be UTF-8".into()))?,
        )
    } else {
        Data::Binary(msg.payload)
    };
    let handle = find(&state, &msg.channel).await?;
    let sent = handle.addr.send(PublishHttp {
        data,
        forwarded: true,
    });
    match sent.await {
        Ok(Ok(delivered)) => Ok(HttpResponse::Ok().json(Published { delivered })),
        Ok(Err(e)) => Err(channel_refused(e)),
        Err(_) => Err(PeerError::ChannelNotFound),
    }
}

/// `POST /relay/clients`: the clients of a channel this node sequences (presence).
async fn clients(
    req: HttpRequest,
    state: web::Data<PeerState>,
    mut body: web::Payload,
) -> Result<HttpResponse, PeerError> {
    authenticate(&req, &state)?;
    let query: ClientsQuery = read_json(&req, &mut body).await?;
    let handle = find(&state, &query.channel).await?;
    match handle.addr.send(ListClients { forwarded: true }).await {
        Ok(Ok(list)) => Ok(HttpResponse::Ok().json(list)),
        Ok(Err(e)) => Err(channel_refused(e)),
        Err(_) => Err(PeerError::ChannelNotFound),
    }
}

/// `POST /relay/live`: the live numbers of the listed channels that this node sequences.
async fn live(
    req: HttpRequest,
    state: web::Data<PeerState>,
    mut body: web::Payload,
) -> Result<HttpResponse, PeerError> {
    authenticate(&req, &state)?;
    let query: LiveQuery = read_json(&req, &mut body).await?;
    let wanted: HashSet<String> = query.channels.into_iter().collect();
    let all = state.registry.send(List).await.unwrap_or_default();
    let live: HashMap<String, Live> = all
        .into_iter()
        .filter(|(info, owner)| owner.is_none() && wanted.contains(&info.record.id))
        .map(|(info, _)| {
            let live = Live {
                clients: info.stats.clients.load(Ordering::Relaxed),
                idle_ms: info.stats.idle_ms(),
            };
            (info.record.id.clone(), live)
        })
        .collect();
    Ok(HttpResponse::Ok().json(live))
}

/// Reads a JSON body of at most `MAX_JSON_BODY` bytes (after `authenticate`, never before).
async fn read_json<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: &mut web::Payload,
) -> Result<T, PeerError> {
    let body = crate::body::read(req, payload, MAX_JSON_BODY)
        .await
        .map_err(|e| PeerError::BadRequest(e.to_string()))?;
    serde_json::from_slice(&body)
        .map_err(|e| PeerError::BadRequest(format!("unreadable body: {e}")))
}

/// Binds the peer port.
pub fn serve(
    bind: &str,
    port: u16,
    node: Addr<RaftNode>,
    registry: Addr<Registry>,
    (secret, max_message): (Option<String>, usize),
) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(PeerState {
        node,
        registry,
        verifier: secret.map(Verifier::new),
        max_message,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/link", web::get().to(link))
            .route("/join", web::post().to(join))
            .route("/relay/join", web::post().to(join_channel))
            .route("/relay/live", web::post().to(live))
            .route("/relay/publish", web::post().to(publish))
            .route("/relay/clients", web::post().to(clients))
    })
    .workers(2)
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(1)
    .bind((bind, port))?;
    Ok(server.run())
}
