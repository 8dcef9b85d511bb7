//! Cluster membership as the API sees it. Today a node runs alone and is its own leader;
//! the Raft-replicated cluster (tikv raft-rs) plugs in here (issue "Cluster").

use serde_json::{json, Value};

/// This node's identity and advertised address (`WRS_DOMAIN:WRS_PUBLIC_API_PORT`).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: u64,
    pub address: String,
}

impl NodeInfo {
    pub fn new(domain: &str, public_port: u16) -> NodeInfo {
        let mut bytes = [0u8; 8];
        // Raft ids are u64; keep them below 2^53 so JavaScript reads them exactly.
        let id = loop {
            let _ = openssl::rand::rand_bytes(&mut bytes);
            let id = u64::from_le_bytes(bytes) & ((1 << 53) - 1);
            if id != 0 {
                break id;
            }
        };
        NodeInfo {
            id,
            address: format!("{domain}:{public_port}"),
        }
    }

    /// The `GET /cluster` view of a single node.
    pub fn view(&self) -> Value {
        json!({
            "id": self.id,
            "leader": self.id,
            "term": 0,
            "nodes": [{ "id": self.id, "address": self.address, "role": "leader" }],
        })
    }
}
