//! The one peer wire, on `WRS_NODE_PORT`: `wire` (what travels and its codec), `client`
//! (links and requests that call out), `server` (every peer route, authenticated in one place),
//! `proof` (how a peer proves it holds `WRS_CLUSTER_SECRET` without sending it).
//! Links are WebSockets, so the peer transport stays plain HTTP.

pub mod client;
pub mod proof;
pub mod server;
pub mod wire;

/// The calling node's id, on a link's upgrade request.
pub const NODE_HEADER: &str = "x-wrs-node";
/// The calling node's peer address, on a link's upgrade request.
pub const PEER_HEADER: &str = "x-wrs-peer";
