//! Plain data every layer shares: what a channel is (`ChannelSpec`, `Pattern`,
//! `ChannelRecord`), who is in it (`ClientId`), what travels (`Data`), who the nodes are
//! (`Member`), and the typed JSON views of REST and peer bodies. No behaviour beyond parsing
//! and naming, and no imports from the rest of the crate: it is the floor everything stands on.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    Echo,
    PubSub,
    PushPull,
    ReqRepl,
    FanInOut,
}

impl Pattern {
    pub const ALL: [Pattern; 5] = [
        Pattern::Echo,
        Pattern::PubSub,
        Pattern::PushPull,
        Pattern::ReqRepl,
        Pattern::FanInOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Echo => "echo",
            Pattern::PubSub => "pub-sub",
            Pattern::PushPull => "push-pull",
            Pattern::ReqRepl => "req-repl",
            Pattern::FanInOut => "fan-in-out",
        }
    }

    /// Whether messages follow the JSON request/reply subprotocol.
    pub fn uses_envelope(self) -> bool {
        matches!(self, Pattern::ReqRepl | Pattern::FanInOut)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Pattern {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Pattern::ALL.into_iter().find(|p| p.as_str() == s).ok_or(())
    }
}

/// A client id: a UUID string, cheap to clone.
pub type ClientId = Arc<str>;

/// A channel's configuration, fixed at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelSpec {
    pub pattern: Pattern,
    /// `-1` = no limit.
    pub client_limit: i64,
    /// Milliseconds; `-1` = never.
    pub timeout: i64,
    pub include_sender: bool,
    /// Messages a pub-sub channel keeps for late joiners (0 = none). Absent in state written
    /// before history existed, hence the default.
    #[serde(default)]
    pub history: u32,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a channel needs to admit a client: who it is, when it connected (ms since the Unix
/// epoch), and how many stored messages it asked to be replayed (`history=K`, 0 = none).
#[derive(Debug, Clone)]
pub struct Admission {
    pub client: ClientId,
    pub connected_at_ms: u64,
    pub history: usize,
}

/// One connected client as presence lists it (`GET /channels/{id}/clients`): its id (the
/// `origin` req-repl uses), when it connected (ms since the Unix epoch) and the node it is
/// connected to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Present {
    pub id: String,
    pub connected_at: u64,
    pub node: u64,
}

/// Why a channel did not take a server-side publish or answer a presence query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRefused {
    /// Publishing over HTTP is for pub-sub and push-pull only.
    PatternUnsupported,
    /// The channel is gone (deleted, or unknown at its owner).
    Closed,
    /// The owner node could not be reached, or ownership is moving.
    Unavailable,
}

/// One message's payload; text stays text, binary stays binary.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Text(ByteString),
    Binary(Bytes),
}

impl Data {
    /// The payload's size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Data::Text(t) => t.len(),
            Data::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a channel (on this node or at its owner) did not admit a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefused {
    LimitReached(i64),
    Closed,
    /// The owner node could not be reached.
    Unavailable,
}

/// A channel as the cluster agrees on it. The token itself is never replicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelRecord {
    pub id: String,
    pub spec: ChannelSpec,
    pub token_hash: [u8; 32],
    pub created_at_ms: u64,
}

/// A node's addresses: its public API (`WRS_DOMAIN:WRS_PUBLIC_API_PORT`) and its peer port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub api: String,
    pub peer: String,
}

/// Why a channel is deleted; decides the close code its clients get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteCause {
    Deleted,
    TimedOut,
}

/// A channel's live numbers as its owner sees them (a proxy node asks the owner for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Live {
    pub clients: u64,
    pub idle_ms: u64,
}

/// `GET /cluster`'s `data`: this node and every member as this node sees them. Discovery
/// reads the same type from other nodes, so both ends agree on the field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterBody {
    pub id: u64,
    pub address: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub nodes: Vec<NodeBody>,
    /// The cluster's identity (0: not part of a cluster yet, or from an older node).
    #[serde(default)]
    pub cluster: u64,
}

/// One member in `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeBody {
    pub id: u64,
    pub address: String,
    pub peer: String,
    pub role: String,
    /// `up`, or `down` once the leader's failure detector committed that it is silent.
    #[serde(default)]
    pub state: String,
    /// Milliseconds since the answering node last heard from this member (`null`: never).
    #[serde(default)]
    pub last_heard_ms: Option<u64>,
}

impl ClusterBody {
    /// The leader's peer address, if a leader is known and listed.
    pub fn leader_peer(&self) -> Option<&str> {
        let leader = self.leader?;
        self.nodes
            .iter()
            .find(|n| n.id == leader)
            .map(|n| n.peer.as_str())
    }
}
