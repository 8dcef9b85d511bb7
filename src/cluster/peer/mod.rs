//! The one peer wire, on `WRS_NODE_PORT`: `wire` (what travels and its codec), `client`
//! (links and requests that call out), `server` (every peer route, authenticated in one place).
//! Links are WebSockets, so the peer transport stays plain HTTP.

pub mod client;
pub mod server;
pub mod wire;

/// The header that carries `WRS_CLUSTER_SECRET` on every peer request.
pub const SECRET_HEADER: &str = "x-wrs-cluster-secret";
/// The calling node's id, on a link's upgrade request.
pub const NODE_HEADER: &str = "x-wrs-node";
/// The calling node's peer address, on a link's upgrade request.
pub const PEER_HEADER: &str = "x-wrs-peer";
