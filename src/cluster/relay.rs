//! The cross-node message path (never through the Raft log). Each channel has one owner node
//! that sequences it; other nodes forward their clients' joins, messages and leaves to the
//! owner, and the owner sends back encoded frames for their clients. One long-lived streaming
//! HTTP request per node pair carries the records; joins are request/response.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use super::transport::{wrong_secret, SECRET_HEADER};
use crate::actors::channel::{DeliverLocal, JoinRemote, Leave, Publish};
use crate::actors::peers::{JoinFuture, Peers};
use crate::actors::registry::{Get, List, Registry};
use crate::model::{ClientId, Data, JoinRefused, Member};

/// Records waiting for one peer beyond this are dropped (and counted) rather than queued.
const LINK_CAPACITY: usize = 1 << 16;
/// A relay chunk is cut at this size, so one busy channel cannot starve a link.
const MAX_CHUNK: usize = 256 << 10;

thread_local! {
    /// One HTTP client per thread (awc is not `Send`), so peer requests reuse connections.
    static PEER_CLIENT: awc::Client = awc::Client::builder().finish();
}

fn peer_client() -> awc::Client {
    PEER_CLIENT.with(awc::Client::clone)
}

/// One record on a relay stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Publish {
        channel: String,
        from: ClientId,
        data: Data,
    },
    Leave {
        channel: String,
        client: ClientId,
    },
    Deliver {
        channel: String,
        to: Vec<ClientId>,
        frame: Bytes,
    },
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

fn get_str(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let n = buf.get_u16() as usize;
    if buf.remaining() < n {
        return None;
    }
    String::from_utf8(buf.split_to(n).to_vec()).ok()
}

fn get_bytes(buf: &mut Bytes) -> Option<Bytes> {
    if buf.remaining() < 4 {
        return None;
    }
    let n = buf.get_u32() as usize;
    (buf.remaining() >= n).then(|| buf.split_to(n))
}

impl Record {
    /// Encodes as `[u32 length][kind][fields]`.
    pub fn encode(&self) -> Bytes {
        let mut body = BytesMut::new();
        match self {
            Record::Publish {
                channel,
                from,
                data,
            } => {
                body.put_u8(1);
                put_str(&mut body, channel);
                put_str(&mut body, from);
                let (kind, payload): (u8, &[u8]) = match data {
                    Data::Text(t) => (0, t.as_bytes()),
                    Data::Binary(b) => (1, b),
                };
                body.put_u8(kind);
                body.put_u32(payload.len() as u32);
                body.put_slice(payload);
            }
            Record::Leave { channel, client } => {
                body.put_u8(2);
                put_str(&mut body, channel);
                put_str(&mut body, client);
            }
            Record::Deliver { channel, to, frame } => {
                body.put_u8(3);
                put_str(&mut body, channel);
                body.put_u16(to.len() as u16);
                for c in to {
                    put_str(&mut body, c);
                }
                body.put_u32(frame.len() as u32);
                body.put_slice(frame);
            }
        }
        let mut out = BytesMut::with_capacity(body.len() + 4);
        out.put_u32(body.len() as u32);
        out.put_slice(&body);
        out.freeze()
    }

    /// Decodes one record body (without its length prefix).
    pub fn decode(mut buf: Bytes) -> Option<Record> {
        if !buf.has_remaining() {
            return None;
        }
        match buf.get_u8() {
            1 => {
                let channel = get_str(&mut buf)?;
                let from = get_str(&mut buf)?.into();
                if !buf.has_remaining() {
                    return None;
                }
                let kind = buf.get_u8();
                let payload = get_bytes(&mut buf)?;
                let data = match kind {
                    0 => Data::Text(bytestring::ByteString::try_from(payload).ok()?),
                    _ => Data::Binary(payload),
                };
                Some(Record::Publish {
                    channel,
                    from,
                    data,
                })
            }
            2 => Some(Record::Leave {
                channel: get_str(&mut buf)?,
                client: get_str(&mut buf)?.into(),
            }),
            3 => {
                let channel = get_str(&mut buf)?;
                if buf.remaining() < 2 {
                    return None;
                }
                let n = buf.get_u16() as usize;
                let mut to = Vec::with_capacity(n);
                for _ in 0..n {
                    to.push(get_str(&mut buf)?.into());
                }
                let frame = get_bytes(&mut buf)?;
                Some(Record::Deliver { channel, to, frame })
            }
            _ => None,
        }
    }
}

/// A channel's live numbers, as its owner sees them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Live {
    pub clients: u64,
    pub idle_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub channel: String,
    pub client: String,
    pub node: u64,
}

/// This node's view of where peers are and its open links to them. Shared by every channel.
pub struct Relay {
    pub me: u64,
    secret: Option<String>,
    /// The thread that runs the links.
    arbiter: actix::ArbiterHandle,
    peers: RwLock<HashMap<u64, String>>,
    links: Mutex<HashMap<u64, mpsc::Sender<Bytes>>>,
}

impl Relay {
    pub fn new(me: u64, secret: Option<String>, arbiter: actix::ArbiterHandle) -> Arc<Relay> {
        Arc::new(Relay {
            me,
            secret,
            arbiter,
            peers: RwLock::default(),
            links: Mutex::default(),
        })
    }

    pub fn set_members(&self, members: &[Member]) {
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        *peers = members.iter().map(|m| (m.id, m.peer.clone())).collect();
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|id, _| peers.contains_key(id));
    }

    fn peer(&self, node: u64) -> Option<String> {
        self.peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&node)
            .cloned()
    }

    /// Queues a record for `node`, opening the link if needed. False if it had to be dropped.
    pub fn send(&self, node: u64, record: &Record) -> bool {
        let bytes = record.encode();
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = links.get(&node) {
            match tx.try_send(bytes) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    log::warn!("relay: link to node {node} is full; dropping a record");
                    return false;
                }
                Err(mpsc::error::TrySendError::Closed(b)) => {
                    links.remove(&node);
                    return self.open(node, b, &mut links);
                }
            }
        }
        self.open(node, bytes, &mut links)
    }

    fn open(&self, node: u64, first: Bytes, links: &mut HashMap<u64, mpsc::Sender<Bytes>>) -> bool {
        let Some(addr) = self.peer(node) else {
            log::debug!("relay: no address for node {node}");
            return false;
        };
        let (tx, rx) = mpsc::channel(LINK_CAPACITY);
        let _ = tx.try_send(first);
        links.insert(node, tx);
        let secret = self.secret.clone();
        let me = self.me;
        self.arbiter.spawn(run_link(me, node, addr, secret, rx));
        true
    }

    /// Asks the owner `node` to admit `client` to `channel` (client limit, existence).
    pub async fn join(&self, node: u64, channel: &str, client: &str) -> Result<(), JoinRefused> {
        let addr = self.peer(node).ok_or(JoinRefused::Unavailable)?;
        let mut req = peer_client()
            .post(format!("http://{addr}/relay/join"))
            .timeout(Duration::from_secs(5));
        if let Some(s) = &self.secret {
            req = req.insert_header((SECRET_HEADER, s.as_str()));
        }
        let body = JoinRequest {
            channel: channel.to_owned(),
            client: client.to_owned(),
            node: self.me,
        };
        let mut res = req
            .send_json(&body)
            .await
            .map_err(|_| JoinRefused::Unavailable)?;
        match res.status() {
            StatusCode::OK => Ok(()),
            StatusCode::CONFLICT => {
                let v: serde_json::Value = res.json().await.unwrap_or_default();
                Err(JoinRefused::LimitReached(v["limit"].as_i64().unwrap_or(0)))
            }
            StatusCode::NOT_FOUND => Err(JoinRefused::Closed),
            _ => Err(JoinRefused::Unavailable),
        }
    }
}

impl Peers for Relay {
    fn publish(&self, owner: u64, channel: &str, from: ClientId, data: Data) -> bool {
        let channel = channel.to_owned();
        self.send(
            owner,
            &Record::Publish {
                channel,
                from,
                data,
            },
        )
    }

    fn leave(&self, owner: u64, channel: &str, client: ClientId) -> bool {
        let channel = channel.to_owned();
        self.send(owner, &Record::Leave { channel, client })
    }

    fn deliver(&self, node: u64, channel: &str, to: Vec<ClientId>, frame: Bytes) -> bool {
        let channel = channel.to_owned();
        self.send(node, &Record::Deliver { channel, to, frame })
    }

    fn join(self: Arc<Self>, owner: u64, channel: String, client: ClientId) -> JoinFuture {
        Box::pin(async move { Relay::join(&self, owner, &channel, &client).await })
    }
}

impl Relay {
    /// Asks the owner `node` for the live numbers of `ids` (one request for many channels).
    pub async fn live(&self, node: u64, ids: &[String]) -> Option<HashMap<String, Live>> {
        let addr = self.peer(node)?;
        // Short: a listing must not wait long for an unreachable owner (it falls back to this
        // node's own numbers).
        let mut req = peer_client()
            .post(format!("http://{addr}/relay/live"))
            .timeout(Duration::from_millis(500));
        if let Some(s) = &self.secret {
            req = req.insert_header((SECRET_HEADER, s.as_str()));
        }
        let mut res = req.send_json(&ids).await.ok()?;
        if !res.status().is_success() {
            return None;
        }
        res.json().limit(64 << 20).await.ok()
    }
}

/// Streams queued records to `addr` as one chunked HTTP request, written by hand: every batch
/// must reach the wire at once, and HTTP clients buffer streaming bodies until they fill up.
/// Ends when the peer goes away (the next record opens a new link).
async fn run_link(
    me: u64,
    node: u64,
    addr: String,
    secret: Option<String>,
    mut rx: mpsc::Receiver<Bytes>,
) {
    use tokio::io::AsyncWriteExt;
    let result: std::io::Result<()> = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream.set_nodelay(true)?;
        let secret = secret
            .map(|s| format!("{SECRET_HEADER}: {s}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST /relay HTTP/1.1\r\nhost: {addr}\r\nx-wrs-node: {me}\r\n{secret}\
             content-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        log::debug!("relay: link to node {node} at {addr} open");
        while let Some(first) = rx.recv().await {
            let mut body = BytesMut::from(&first[..]);
            while body.len() < MAX_CHUNK {
                match rx.try_recv() {
                    Ok(more) => body.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            let mut chunk = BytesMut::with_capacity(body.len() + 16);
            chunk.put_slice(format!("{:x}\r\n", body.len()).as_bytes());
            chunk.put_slice(&body);
            chunk.put_slice(b"\r\n");
            stream.write_all(&chunk).await?;
        }
        stream.write_all(b"0\r\n\r\n").await
    }
    .await;
    if let Err(e) = result {
        log::info!("relay: link to node {node} at {addr} closed: {e}");
    }
}

pub struct RelayState {
    pub registry: Addr<Registry>,
    pub node: Addr<super::node::RaftNode>,
    pub secret: Option<String>,
}

/// `POST /relay`: reads records from a peer for as long as it streams them.
pub async fn relay_in(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<RelayState>,
) -> HttpResponse {
    if let Some(res) = wrong_secret(&req, &state.secret) {
        return res;
    }
    let mut buf = BytesMut::new();
    let mut channels: HashMap<String, Addr<crate::actors::channel::Channel>> = HashMap::new();
    log::debug!("relay: inbound link open");
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else { break };
        log::trace!("relay: {} bytes in", chunk.len());
        buf.extend_from_slice(&chunk);
        loop {
            if buf.len() < 4 {
                break;
            }
            let n = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if buf.len() < 4 + n {
                break;
            }
            buf.advance(4);
            let body = buf.split_to(n).freeze();
            let Some(record) = Record::decode(body) else {
                log::warn!("relay: unreadable record; closing the link");
                return HttpResponse::BadRequest().finish();
            };
            dispatch(record, &state.registry, &mut channels).await;
        }
    }
    HttpResponse::NoContent().finish()
}

async fn dispatch(
    record: Record,
    registry: &Addr<Registry>,
    cache: &mut HashMap<String, Addr<crate::actors::channel::Channel>>,
) {
    let channel = match &record {
        Record::Publish { channel, .. }
        | Record::Leave { channel, .. }
        | Record::Deliver { channel, .. } => channel.clone(),
    };
    let addr = match cache.get(&channel) {
        Some(a) if a.connected() => a.clone(),
        _ => match registry.send(Get(channel.clone())).await {
            Ok(Some(handle)) => {
                cache.insert(channel, handle.addr.clone());
                handle.addr
            }
            _ => return,
        },
    };
    match record {
        Record::Publish { from, data, .. } => addr.do_send(Publish { from, data }),
        Record::Leave { client, .. } => addr.do_send(Leave { id: client }),
        Record::Deliver { to, frame, .. } => addr.do_send(DeliverLocal { to, frame }),
    }
}

/// `POST /relay/live`: the live numbers of the listed channels that this node sequences.
pub async fn live_in(
    req: HttpRequest,
    body: web::Json<Vec<String>>,
    state: web::Data<RelayState>,
) -> HttpResponse {
    if let Some(res) = wrong_secret(&req, &state.secret) {
        return res;
    }
    let wanted: std::collections::HashSet<String> = body.into_inner().into_iter().collect();
    let all = state.registry.send(List).await.unwrap_or_default();
    let live: HashMap<String, Live> = all
        .into_iter()
        .filter(|(info, owner)| owner.is_none() && wanted.contains(&info.record.id))
        .map(|(info, _)| {
            let live = Live {
                clients: info
                    .stats
                    .clients
                    .load(std::sync::atomic::Ordering::Relaxed),
                idle_ms: info.stats.idle_ms(),
            };
            (info.record.id.clone(), live)
        })
        .collect();
    HttpResponse::Ok().json(live)
}

/// `POST /relay/join`: a proxy node asks this (owner) node to admit one of its clients.
pub async fn join_in(
    req: HttpRequest,
    body: web::Json<JoinRequest>,
    state: web::Data<RelayState>,
) -> HttpResponse {
    if let Some(res) = wrong_secret(&req, &state.secret) {
        return res;
    }
    let body = body.into_inner();
    let mut found = state
        .registry
        .send(Get(body.channel.clone()))
        .await
        .ok()
        .flatten();
    if found.is_none() && state.node.send(super::node::CatchUp).await.unwrap_or(false) {
        // The proxy may have applied the create before this owner did.
        found = state
            .registry
            .send(Get(body.channel.clone()))
            .await
            .ok()
            .flatten();
    }
    let Some(handle) = found else {
        return HttpResponse::NotFound()
            .json(json!({ "message": "no such channel", "error": "channel_not_found" }));
    };
    let join = JoinRemote {
        id: body.client.into(),
        node: body.node,
    };
    match handle.addr.send(join).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({ "message": "joined" })),
        Ok(Err(JoinRefused::LimitReached(limit))) => HttpResponse::Conflict().json(
            json!({ "message": "client limit reached", "error": "client_limit_reached", "limit": limit }),
        ),
        Ok(Err(JoinRefused::Closed)) | Err(_) => HttpResponse::NotFound()
            .json(json!({ "message": "no such channel", "error": "channel_not_found" })),
        Ok(Err(JoinRefused::Unavailable)) => HttpResponse::ServiceUnavailable()
            .json(json!({ "message": "the channel's owner moved", "error": "unavailable" })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let records = [
            Record::Publish {
                channel: "c".into(),
                from: "a".into(),
                data: Data::Text("héllo".into()),
            },
            Record::Publish {
                channel: "c".into(),
                from: "a".into(),
                data: Data::Binary(Bytes::from_static(&[0, 1, 2])),
            },
            Record::Leave {
                channel: "c".into(),
                client: "b".into(),
            },
            Record::Deliver {
                channel: "c".into(),
                to: vec!["x".into(), "y".into()],
                frame: Bytes::from_static(b"\x81\x01a"),
            },
        ];
        for r in records {
            let mut bytes = r.encode();
            let n = bytes.get_u32() as usize;
            assert_eq!(n, bytes.len());
            assert_eq!(Record::decode(bytes), Some(r));
        }
        assert_eq!(Record::decode(Bytes::from_static(&[9])), None);
        assert_eq!(Record::decode(Bytes::from_static(&[1, 0, 5, b'a'])), None);
    }
}
