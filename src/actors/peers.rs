//! What a channel needs from the other nodes of its cluster, as a trait: forward a client's
//! message or leave to the channel's owner, hand frames to another node's clients, ask the
//! owner to admit a client, publish a server-side message or list the clients there. The
//! cluster layer implements it (`cluster::relay::Relay`), so the
//! actors never name a cluster type and imports run one way: cluster → actors → model.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::model::{Admission, ChannelRefused, ClientId, Data, JoinRefused, Present};

/// The answer to a join at a remote owner; not `Send` (the HTTP client lives on one thread).
pub type JoinFuture = Pin<Box<dyn Future<Output = Result<(), JoinRefused>>>>;

/// The answer of a remote owner to a server-side publish (how many clients it reached) or a
/// presence query; not `Send`, like `JoinFuture`.
pub type AskFuture<T> = Pin<Box<dyn Future<Output = Result<T, ChannelRefused>>>>;

/// Resolves once a record waiting for room on a full link is queued (`false`: it was lost).
pub type SendFuture = Pin<Box<dyn Future<Output = bool>>>;

/// What became of a record handed to another node.
pub enum Sent {
    Queued,
    /// No route to that node (it left or is unknown): the record is lost, and counted.
    Lost,
    /// The link to that node is full: the record is queued once there is room. The channel
    /// awaits this before its next message, so a slow peer slows the senders' sockets instead
    /// of losing messages.
    Later(SendFuture),
}

pub trait Peers: Send + Sync {
    /// A local client's message, for the owner to sequence.
    fn publish(&self, owner: u64, channel: &str, from: ClientId, data: Data) -> Sent;
    /// A local client went away; the owner forgets it.
    fn leave(&self, owner: u64, channel: &str, client: ClientId) -> Sent;
    /// One encoded frame for clients of `node` (sent once per node, not per client).
    fn deliver(&self, node: u64, channel: &str, to: Vec<ClientId>, frame: Bytes) -> Sent;
    /// Asks the owner to admit a client (existence and the cluster-wide client limit); the
    /// owner replays the history it asked for over the link that carries its live frames.
    fn join(self: Arc<Self>, owner: u64, channel: String, admission: Admission) -> JoinFuture;
    /// A server-side publish (`POST /channels/{id}/messages` on this node), for the owner to
    /// route by the channel's pattern.
    fn publish_http(self: Arc<Self>, owner: u64, channel: String, data: Data) -> AskFuture<u64>;
    /// The channel's clients across the cluster, as its owner knows them.
    fn clients(self: Arc<Self>, owner: u64, channel: String) -> AskFuture<Vec<Present>>;
    /// This node's id (presence names the node each client is connected to).
    fn node_id(&self) -> u64;
}
