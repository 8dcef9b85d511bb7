//! The cluster: a tikv raft-rs node (`node`) replicating channels and members (`state`,
//! `storage`) over an HTTP peer transport (`transport`), and joining/leaving (`membership`).
//! A node started without `WRS_JOIN` is a cluster of one; the code path is the same.

pub mod membership;
pub mod node;
pub mod relay;
pub mod state;
pub mod storage;
pub mod transport;

use serde_json::{json, Value};

use self::node::ClusterView;

/// A random Raft id below 2^53, so JavaScript reads it exactly.
pub fn random_node_id() -> u64 {
    let mut bytes = [0u8; 8];
    loop {
        let _ = openssl::rand::rand_bytes(&mut bytes);
        let id = u64::from_le_bytes(bytes) & ((1 << 53) - 1);
        if id != 0 {
            return id;
        }
    }
}

/// The `GET /cluster` body's `data`.
pub fn view_json(view: &ClusterView) -> Value {
    let nodes: Vec<Value> = view
        .nodes
        .iter()
        .map(|(m, role)| json!({ "id": m.id, "address": m.api, "peer": m.peer, "role": role }))
        .collect();
    json!({
        "id": view.id,
        "address": view.me.api,
        "leader": view.leader,
        "term": view.term,
        "commitIndex": view.commit,
        "appliedIndex": view.applied,
        "nodes": nodes,
    })
}
