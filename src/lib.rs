//! wrs — the WebSocket Relay Service, as a library: `run` starts one node (the `wrs` binary
//! is `main.rs` around it; tests can start nodes in-process the same way).
//!
//! # The layout, from the floor up (a module only imports modules listed before it)
//!
//! - `model` — plain data every layer shares: `Pattern`, `ChannelSpec`, `ChannelRecord`,
//!   `ClientId`, `Data`, `Member`, `DeleteCause`, `JoinRefused`, `Admission`, `Present`,
//!   `ChannelRefused`.
//! - `error` — every error a caller sees: `ApiError` (HTTP status + JSON body) and
//!   `CloseCause` (WebSocket close code), mapped in one place.
//! - `token`, `config`, `metrics`, `body` — ids and tokens, the `WRS_*` configuration, the
//!   Prometheus registry, bounded request bodies.
//! - `actors` — the message path of one node: `registry` (channel id → channel actor),
//!   `channel` (one actor per channel in one of two roles: `owner` sequences it, `proxy`
//!   forwards this node's clients to the owner), `session` + `outbox` (one
//!   WebSocket client), the pure `pattern`, `subprotocol` and `history` (the owner's ring
//!   buffer of a channel's last messages for late joiners), and `peers`: the trait through
//!   which a channel reaches other nodes without naming the cluster.
//! - `cluster` — Raft (`core`: consensus and the failure detector as pure state, tested in a
//!   simulated network by `harness`; `node`: the actor that gives it ticks, links and callers;
//!   `state`, `storage` — in memory, or written through to `WRS_DATA_DIR` by `storage::disk`),
//!   membership, discovery and rejoin, the cross-node relay and the peer
//!   port. It drives the actors (mirrors commits into the registry) and
//!   implements `actors::peers::Peers`.
//! - `api` — the actix-web application: REST, the WebSocket upgrade, publish over HTTP and
//!   presence (`messages`), pages, auth.
//! - `server` — wires all of it into one running node.
//!
//! One message, single node: socket → `Session` → `Channel` (the pattern picks recipients) →
//! each recipient's `Outbox` → socket. A publish over HTTP: handler → `Channel` (on a node that
//! is not the owner: → the owner's peer port → its `Channel`) → the same path. A REST write:
//! handler → Raft proposal → commit → every node's `Registry` follows → the handler answers.

pub mod actors;
pub mod api;
pub mod body;
pub mod cluster;
pub mod config;
pub mod error;
pub mod metrics;
pub mod model;
pub mod server;
pub mod token;

pub use server::run;
