//! HTTP peer transport on `WRS_NODE_PORT`: Raft messages protobuf-encoded and batched per
//! peer (one request in flight per peer, kept-alive connections), join requests, and the
//! cluster-secret check that runs before any peer body is decoded.

use std::collections::VecDeque;
use std::time::Duration;

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::{BufMut, Bytes, BytesMut};
use protobuf::Message as _;
use raft::prelude::{Message as RaftMessage, MessageType};
use serde_json::json;

use super::node::{AddMember, ProposeError, RaftNode, SnapshotSent, Step, Unreachable};
use crate::model::Member;
use crate::token;

/// The header that carries `WRS_CLUSTER_SECRET` on every peer request.
pub const SECRET_HEADER: &str = "x-wrs-cluster-secret";
/// Peer bodies (snapshots included) larger than this are refused before decoding.
const MAX_PEER_BODY: usize = 256 << 20;
/// Messages waiting for one peer beyond this are dropped (Raft retransmits what matters).
const MAX_QUEUED: usize = 8192;

/// Encodes a batch: sender id, sender peer address, then length-prefixed protobuf messages.
pub fn encode_batch(from: &Member, msgs: &[RaftMessage]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u64(from.id);
    buf.put_u16(from.peer.len() as u16);
    buf.put_slice(from.peer.as_bytes());
    for m in msgs {
        let bytes = m.write_to_bytes().unwrap_or_default();
        buf.put_u32(bytes.len() as u32);
        buf.put_slice(&bytes);
    }
    buf.freeze()
}

pub fn decode_batch(mut body: &[u8]) -> Option<(u64, String, Vec<RaftMessage>)> {
    use bytes::Buf;
    if body.remaining() < 10 {
        return None;
    }
    let from = body.get_u64();
    let len = body.get_u16() as usize;
    if body.remaining() < len {
        return None;
    }
    let addr = String::from_utf8(body[..len].to_vec()).ok()?;
    body.advance(len);
    let mut msgs = Vec::new();
    while body.has_remaining() {
        if body.remaining() < 4 {
            return None;
        }
        let n = body.get_u32() as usize;
        if body.remaining() < n {
            return None;
        }
        msgs.push(RaftMessage::parse_from_bytes(&body[..n]).ok()?);
        body.advance(n);
    }
    Some((from, addr, msgs))
}

fn http_client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .disable_redirects()
        .finish()
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct SendBatch {
    pub msgs: Vec<RaftMessage>,
    pub addr: String,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Sent {
    ok: bool,
    snapshot: bool,
}

/// Sends one peer's Raft messages, one request at a time, batching what arrives meanwhile.
pub struct PeerSender {
    to: u64,
    addr: String,
    me: Member,
    secret: Option<String>,
    node: Addr<RaftNode>,
    client: awc::Client,
    queue: VecDeque<RaftMessage>,
    in_flight: bool,
}

impl PeerSender {
    pub fn new(
        to: u64,
        addr: String,
        me: Member,
        secret: Option<String>,
        node: Addr<RaftNode>,
    ) -> PeerSender {
        PeerSender {
            to,
            addr,
            me,
            secret,
            node,
            client: http_client(),
            queue: VecDeque::new(),
            in_flight: false,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.queue.is_empty() {
            return;
        }
        let msgs: Vec<RaftMessage> = self.queue.drain(..).collect();
        let snapshot = msgs
            .iter()
            .any(|m| m.get_msg_type() == MessageType::MsgSnapshot);
        let body = encode_batch(&self.me, &msgs);
        let mut req = self
            .client
            .post(format!("http://{}/raft", self.addr))
            .insert_header(("content-type", "application/octet-stream"));
        if let Some(s) = &self.secret {
            req = req.insert_header((SECRET_HEADER, s.as_str()));
        }
        self.in_flight = true;
        let fut = async move {
            match req.send_body(body).await {
                Ok(res) => res.status().is_success(),
                Err(_) => false,
            }
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |ok, _, ctx| ctx.notify(Sent { ok, snapshot })),
        );
    }
}

impl Actor for PeerSender {
    type Context = Context<Self>;
}

impl Handler<SendBatch> for PeerSender {
    type Result = ();

    fn handle(&mut self, msg: SendBatch, ctx: &mut Context<Self>) {
        self.addr = msg.addr;
        self.queue.extend(msg.msgs);
        while self.queue.len() > MAX_QUEUED {
            self.queue.pop_front();
        }
        self.flush(ctx);
    }
}

impl Handler<Sent> for PeerSender {
    type Result = ();

    fn handle(&mut self, msg: Sent, ctx: &mut Context<Self>) {
        self.in_flight = false;
        if msg.ok {
            if msg.snapshot {
                self.node.do_send(SnapshotSent(self.to));
            }
        } else {
            log::debug!("raft: peer {} at {} unreachable", self.to, self.addr);
            self.node.do_send(Unreachable {
                id: self.to,
                snapshot: msg.snapshot,
            });
            // Back off a little so a dead peer does not cost a request per tick.
            self.queue.clear();
            self.in_flight = true;
            ctx.run_later(Duration::from_millis(200), |act, ctx| {
                act.in_flight = false;
                act.flush(ctx);
            });
            return;
        }
        self.flush(ctx);
    }
}

struct PeerState {
    node: Addr<RaftNode>,
    secret: Option<String>,
}

/// The cluster-secret check every peer route runs first: `Some` is the 401 to answer.
pub fn wrong_secret(req: &HttpRequest, secret: &Option<String>) -> Option<HttpResponse> {
    let ok = match secret {
        None => true,
        Some(secret) => req
            .headers()
            .get(SECRET_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| token::matches(v, secret)),
    };
    (!ok).then(|| {
        peer_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong cluster secret".into(),
        )
    })
}

fn peer_error(status: StatusCode, error: &str, message: String) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "message": message, "error": error }))
}

async fn raft_in(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<PeerState>,
) -> HttpResponse {
    // Authenticate before reading, and read (bounded) before decoding: protobuf 2 is not
    // hardened against hostile input (RUSTSEC-2024-0437).
    if let Some(res) = wrong_secret(&req, &state.secret) {
        return res;
    }
    let body = match crate::body::read(&req, &mut payload, MAX_PEER_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return peer_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                e.to_string(),
            )
        }
    };
    match decode_batch(&body) {
        Some((from, from_addr, msgs)) => {
            state.node.do_send(Step {
                from,
                from_addr,
                msgs,
            });
            HttpResponse::NoContent().finish()
        }
        None => peer_error(
            StatusCode::BAD_REQUEST,
            "invalid_batch",
            "unreadable raft batch".into(),
        ),
    }
}

async fn join_in(
    req: HttpRequest,
    body: web::Json<Member>,
    state: web::Data<PeerState>,
) -> HttpResponse {
    if let Some(res) = wrong_secret(&req, &state.secret) {
        return res;
    }
    match state.node.send(AddMember(body.into_inner())).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({ "message": "joined" })),
        Ok(Err(ProposeError::NotLeader(leader))) => HttpResponse::build(
            StatusCode::MISDIRECTED_REQUEST,
        )
        .json(json!({ "message": "not the leader", "error": "not_leader", "leader": leader })),
        Ok(Err(e)) => peer_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
        Err(e) => peer_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        ),
    }
}

/// Binds the peer port.
pub fn serve(
    bind: &str,
    port: u16,
    node: Addr<RaftNode>,
    registry: Addr<crate::actors::registry::Registry>,
    secret: Option<String>,
) -> std::io::Result<actix_web::dev::Server> {
    let relay = web::Data::new(super::relay::RelayState {
        registry,
        node: node.clone(),
        secret: secret.clone(),
    });
    let state = web::Data::new(PeerState { node, secret });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(relay.clone())
            .route("/relay", web::post().to(super::relay::relay_in))
            .route("/relay/join", web::post().to(super::relay::join_in))
            .route("/relay/live", web::post().to(super::relay::live_in))
            .app_data(web::JsonConfig::default().limit(8 << 20))
            .route("/raft", web::post().to(raft_in))
            .route("/join", web::post().to(join_in))
    })
    .workers(2)
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(1)
    .bind((bind, port))?;
    Ok(server.run())
}

/// Asks the member whose peer port is `peer` to add `me`; follows one redirect to the leader.
pub async fn request_join(peer: &str, me: &Member, secret: Option<&str>) -> Result<(), String> {
    let client = http_client();
    let mut target = peer.to_owned();
    for _ in 0..3 {
        let mut req = client.post(format!("http://{target}/join"));
        if let Some(s) = secret {
            req = req.insert_header((SECRET_HEADER, s));
        }
        let mut res = req
            .send_json(me)
            .await
            .map_err(|e| format!("{target}: {e}"))?;
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        match res.status() {
            StatusCode::OK => return Ok(()),
            StatusCode::MISDIRECTED_REQUEST => match body.get("leader").and_then(|l| l.as_str()) {
                Some(leader) => target = leader.to_owned(),
                None => return Err(format!("{target}: no leader known")),
            },
            status => {
                let msg = body.get("message").and_then(|m| m.as_str()).unwrap_or("");
                return Err(format!("{target}: {status} {msg}"));
            }
        }
    }
    Err("too many leader redirects".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_garbage_is_refused() {
        let me = Member {
            id: 7,
            api: "a:1".into(),
            peer: "a:2".into(),
        };
        let m = RaftMessage {
            to: 3,
            term: 9,
            ..Default::default()
        };
        let (from, addr, msgs) = decode_batch(&encode_batch(&me, &[m.clone(), m])).unwrap();
        assert_eq!((from, addr.as_str(), msgs.len()), (7, "a:2", 2));
        assert_eq!(msgs[1].term, 9);
        assert!(decode_batch(b"short").is_none());
        let mut bad = encode_batch(&me, &[]).to_vec();
        bad.extend_from_slice(&[0, 0, 0, 9, 1]);
        assert!(decode_batch(&bad).is_none());
    }
}
