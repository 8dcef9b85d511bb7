//! The cross-node message path (never through the Raft log), as the channels see it: this
//! node's `Peers` implementation. Each channel has one owner node that sequences it; other
//! nodes forward their clients' messages and leaves to the owner over a peer link, and the
//! owner sends back one encoded frame per node for their clients. Joins and live numbers are
//! request/response. A full link makes its sender wait (`Sent::Later`); records are lost
//! only when a peer cannot be reached at all, and every loss is counted.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;

use super::peer::client::{self, Link, LinkSettings, Purpose, RequestError};
use super::peer::wire::{Frame, JoinChannel, LiveQuery};
use crate::actors::peers::{JoinFuture, Peers, Sent};
use crate::metrics;
use crate::model::{ClientId, Data, JoinRefused, Live, Member};

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
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        *peers = members.iter().map(|m| (m.id, m.peer.clone())).collect();
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|id, link| peers.get(id) == Some(&link.addr));
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

    /// Asks the owner `node` to admit `client` to `channel` (client limit, existence).
    pub async fn join(&self, node: u64, channel: &str, client: &str) -> Result<(), JoinRefused> {
        let addr = self.peer(node).ok_or(JoinRefused::Unavailable)?;
        let body = JoinChannel {
            channel: channel.to_owned(),
            client: client.to_owned(),
            node: self.me().id,
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

    fn join(self: Arc<Self>, owner: u64, channel: String, client: ClientId) -> JoinFuture {
        Box::pin(async move { Relay::join(&self, owner, &channel, &client).await })
    }
}
