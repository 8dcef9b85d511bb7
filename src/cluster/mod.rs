//! The cluster: a tikv raft-rs core (`core`, pure; `harness` tests it in a simulated network)
//! driven by an actor (`node`) replicating channels and members (`state`,
//! `storage`) over the peer wire (`peer`), the cross-node message path (`relay`), and
//! joining/leaving (`membership`).
//! A node started without `WRS_JOIN` is a cluster of one; the code path is the same.

pub mod core;
#[cfg(test)]
mod harness;
pub mod membership;
pub mod node;
pub mod peer;
pub mod relay;
pub mod state;
pub mod storage;
pub mod validate;

use self::node::ClusterView;
use crate::model::{ClusterBody, NodeBody};

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
pub fn view_body(view: &ClusterView) -> ClusterBody {
    ClusterBody {
        id: view.id,
        address: view.me.api.clone(),
        leader: view.leader,
        term: view.term,
        commit_index: view.commit,
        applied_index: view.applied,
        cluster: view.cluster,
        nodes: view
            .nodes
            .iter()
            .map(|n| NodeBody {
                id: n.member.id,
                address: n.member.api.clone(),
                peer: n.member.peer.clone(),
                role: n.role.to_owned(),
                state: if n.down { "down" } else { "up" }.to_owned(),
                last_heard_ms: n.heard_ago_ms,
            })
            .collect(),
    }
}
