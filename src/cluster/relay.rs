//! The cross-node message path (never through the Raft log), as the channels see it: this
//! node's `Peers` implementation. Each channel has one owner node that sequences it; other
//! nodes forward their clients' messages and leaves to the owner over a peer link, and the
//! owner sends back one encoded frame per node for their clients. Joins, live numbers,
//! server-side publishes and presence are request/response. A full link makes its sender wait (`Sent::Later`); records are lost
//! only when a peer cannot be reached at all, and every loss is counted.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;

use super::peer::client::{self, Link, LinkSettings, Purpose, RequestError};
use super::peer::wire::{ClientsQuery, Frame, JoinChannel, LiveQuery, PublishRequest, Published};
use crate::actors::peers::{AskFuture, JoinFuture, Peers, Sent};
use crate::metrics;
use crate::model::{Admission, ChannelRefused, ClientId, Data, JoinRefused, Live, Member, Present};

/// How long a server-side publish or presence query waits for the owner.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// What a refusal from the owner means to a channel.
fn refused(e: RequestError) -> ChannelRefused {
    match e {
        RequestError::Refused(_, e) if e.error == "channel_not_found" => ChannelRefused::Closed,
        RequestError::Refused(_, e) if e.error == "pattern_unsupported" => {
            ChannelRefused::PatternUnsupported
        }
        _ => ChannelRefused::Unavailable,
    }
}

/// Frames one relay link queues at most (senders wait beyond it).
const LINK_CAPACITY: usize = 1 << 16;
/// Bytes one relay link queues at most: a peer that stops reading pins no more than this, and
/// senders wait beyond it.
const LINK_MAX_BYTES: usize = 64 << 20;

/// This node's view of where peers are and its open relay links to them. Shared by every
/// channel.
pub struct Relay {
    me: RwLock<Member>,
    secret: Option<String>,
    /// `WRS_NODE_DOWN_AFTER`: a link that makes no progress this long is cut.
    stall: Duration,
    /// The thread that runs the links.
    arbiter: actix::ArbiterHandle,
    peers: RwLock<HashMap<u64, String>>,
    /// Each member's advertised API address (`Member.api`), for URLs that send a client to a
    /// channel's owner (`WRS_CONNECT_TO_OWNER`).
    apis: RwLock<HashMap<u64, String>>,
    /// Members marked down: records for them are lost at once (and counted) instead of
    /// waiting on a link that cannot drain, which would hold up the channel that sends them.
    down: RwLock<HashSet<u64>>,
    links: Mutex<HashMap<u64, Link>>,
}

impl Relay {
    pub fn new(
        me: Member,
        secret: Option<String>,
        stall: Duration,
        arbiter: actix::ArbiterHandle,
    ) -> Arc<Relay> {
        Arc::new(Relay {
            me: RwLock::new(me),
            secret,
            stall,
            arbiter,
            peers: RwLock::default(),
            apis: RwLock::default(),
            down: RwLock::default(),
            links: Mutex::default(),
        })
    }

    fn me(&self) -> Member {
        self.me.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// This node rejoins under a new id: every link, opened under the old one, goes.
    pub fn set_me(&self, me: Member) {
        *self.me.write().unwrap_or_else(|e| e.into_inner()) = me;
        self.links.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The committed members (where links go; links to departed members close) and which of
    /// them are down.
    pub fn set_members(&self, members: &[Member], down: &BTreeSet<u64>) {
        *self.down.write().unwrap_or_else(|e| e.into_inner()) = down.iter().copied().collect();
        *self.apis.write().unwrap_or_else(|e| e.into_inner()) =
            members.iter().map(|m| (m.id, m.api.clone())).collect();
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        *peers = members.iter().map(|m| (m.id, m.peer.clone())).collect();
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|id, link| peers.get(id) == Some(&link.addr));
    }

    /// The advertised API address (`WRS_DOMAIN:WRS_PUBLIC_API_PORT`) of member `node`, if it
    /// is a committed member.
    pub fn api_of(&self, node: u64) -> Option<String> {
        self.apis
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&node)
            .cloned()
    }

    fn peer(&self, node: u64) -> Option<String> {
        self.peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&node)
            .cloned()
    }

    /// Queues a frame for `node`, opening the link if needed; a full link answers `Later`.
    fn send(&self, node: u64, frame: &Frame) -> Sent {
        if self
            .down
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&node)
        {
            metrics::RELAY_LOST.inc();
            return Sent::Lost;
        }
        let bytes = frame.encode();
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let open = links.get(&node).is_some_and(|l| !l.is_closed());
        if !open {
            let Some(addr) = self.peer(node) else {
                log::debug!("relay: no address for node {node}; a record is lost");
                metrics::RELAY_LOST.inc();
                return Sent::Lost;
            };
            // Links run on the relay's own thread, away from the channels' arbiters.
            let settings = LinkSettings {
                secret: self.secret.clone(),
                frames: LINK_CAPACITY,
                bytes: LINK_MAX_BYTES,
                stall: self.stall,
            };
            let link = Link::open(
                &self.arbiter,
                &self.me(),
                node,
                addr,
                settings,
                Purpose::Relay,
            );
            links.insert(node, link);
        }
        let Some(link) = links.get(&node) else {
            return Sent::Lost;
        };
        if link.send(bytes.clone(), false) {
            return Sent::Queued;
        }
        // Waiting is bounded like a stalled write: a link that makes no room within the stall
        // time belongs to a peer about to be marked down.
        let (later, stall) = (link.send_later(bytes), self.stall);
        Sent::Later(Box::pin(async move {
            let queued = matches!(tokio::time::timeout(stall, later).await, Ok(true));
            if !queued {
                metrics::RELAY_LOST.inc();
            }
            queued
        }))
    }

    /// Asks the owner `node` to admit a client to `channel` (client limit, existence).
    pub async fn join(
        &self,
        node: u64,
        channel: &str,
        admission: &Admission,
    ) -> Result<(), JoinRefused> {
        let addr = self.peer(node).ok_or(JoinRefused::Unavailable)?;
        let body = JoinChannel {
            channel: channel.to_owned(),
            client: admission.client.to_string(),
            node: self.me().id,
            connected_at_ms: admission.connected_at_ms,
            history: admission.history,
        };
        let secret = self.secret.as_deref();
        let answer: Result<serde_json::Value, _> =
            client::post(&addr, "/relay/join", secret, &body, Duration::from_secs(5)).await;
        match answer {
            Ok(_) => Ok(()),
            Err(RequestError::Refused(_, e)) if e.error == "client_limit_reached" => {
                Err(JoinRefused::LimitReached(e.limit.unwrap_or(0)))
            }
            Err(RequestError::Refused(_, e)) if e.error == "channel_not_found" => {
                Err(JoinRefused::Closed)
            }
            Err(_) => Err(JoinRefused::Unavailable),
        }
    }

    /// Asks the owner `node` for the live numbers of `ids` (one request for many channels).
    pub async fn live(&self, node: u64, ids: &[String]) -> Option<HashMap<String, Live>> {
        let addr = self.peer(node)?;
        let query = LiveQuery {
            channels: ids.to_vec(),
        };
        // Short: a listing must not wait long for an unreachable owner (it falls back to this
        // node's own numbers).
        let timeout = Duration::from_millis(500);
        client::post(
            &addr,
            "/relay/live",
            self.secret.as_deref(),
            &query,
            timeout,
        )
        .await
        .ok()
    }
}

impl Relay {
    /// Hands a server-side publish to the owner `node`; how many clients it reached.
    pub async fn publish_http(
        &self,
        node: u64,
        channel: &str,
        data: Data,
    ) -> Result<u64, ChannelRefused> {
        let addr = self.peer(node).ok_or(ChannelRefused::Unavailable)?;
        let (text, payload) = match data {
            Data::Text(t) => (true, t.into_bytes()),
            Data::Binary(b) => (false, b),
        };
        let body = PublishRequest {
            channel: channel.to_owned(),
            text,
            payload,
        }
        .encode();
        let secret = self.secret.as_deref();
        let answer: Published =
            client::post_bytes(&addr, "/relay/publish", secret, body, ASK_TIMEOUT)
                .await
                .map_err(refused)?;
        Ok(answer.delivered)
    }

    /// Asks the owner `node` for the clients of `channel` across the cluster.
    pub async fn clients(&self, node: u64, channel: &str) -> Result<Vec<Present>, ChannelRefused> {
        let addr = self.peer(node).ok_or(ChannelRefused::Unavailable)?;
        let query = ClientsQuery {
            channel: channel.to_owned(),
        };
        let secret = self.secret.as_deref();
        client::post(&addr, "/relay/clients", secret, &query, ASK_TIMEOUT)
            .await
            .map_err(refused)
    }
}

impl Peers for Relay {
    fn publish(&self, owner: u64, channel: &str, from: ClientId, data: Data) -> Sent {
        let (text, payload) = match data {
            Data::Text(t) => (true, t.into_bytes()),
            Data::Binary(b) => (false, b),
        };
        let frame = Frame::Publish {
            channel: channel.to_owned(),
            from: from.to_string(),
            text,
            payload,
        };
        self.send(owner, &frame)
    }

    fn leave(&self, owner: u64, channel: &str, client: ClientId) -> Sent {
        let frame = Frame::Leave {
            channel: channel.to_owned(),
            client: client.to_string(),
        };
        self.send(owner, &frame)
    }

    fn deliver(&self, node: u64, channel: &str, to: Vec<ClientId>, frame: Bytes) -> Sent {
        let frame = Frame::Deliver {
            channel: channel.to_owned(),
            to: to.iter().map(|c| c.to_string()).collect(),
            frame,
        };
        self.send(node, &frame)
    }

    fn join(self: Arc<Self>, owner: u64, channel: String, admission: Admission) -> JoinFuture {
        Box::pin(async move { Relay::join(&self, owner, &channel, &admission).await })
    }

    fn publish_http(self: Arc<Self>, owner: u64, channel: String, data: Data) -> AskFuture<u64> {
        Box::pin(async move { Relay::publish_http(&self, owner, &channel, data).await })
    }

    fn clients(self: Arc<Self>, owner: u64, channel: String) -> AskFuture<Vec<Present>> {
        Box::pin(async move { Relay::clients(&self, owner, &channel).await })
    }

    fn node_id(&self) -> u64 {
        self.me().id
    }
}
