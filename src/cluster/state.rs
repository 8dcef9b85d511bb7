//! The replicated state machine: channels (config + token hash) and cluster members. Every
//! node applies the same committed commands in the same order; snapshots are this, as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{ChannelRecord, DeleteCause, Member};

/// A state-changing command carried in a normal Raft entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    CreateChannel(ChannelRecord),
    DeleteChannel { id: String, cause: DeleteCause },
    Reset,
}

/// What applying one command did, as the proposer's caller needs to know.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Created(ChannelRecord),
    Deleted {
        id: String,
        cause: DeleteCause,
    },
    NotFound,
    Reset(Vec<String>),
    ChannelLimitReached(usize),
    /// An id collision (astronomically unlikely): the proposer retries with a new id.
    Duplicate,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub channels: BTreeMap<String, ChannelRecord>,
    pub members: BTreeMap<u64, Member>,
}

impl ClusterState {
    /// Applies one command. Deterministic: the same input gives the same state on every node.
    pub fn apply(&mut self, cmd: Command, max_channels: usize) -> Applied {
        match cmd {
            Command::CreateChannel(record) => {
                if self.channels.contains_key(&record.id) {
                    Applied::Duplicate
                } else if self.channels.len() >= max_channels {
                    Applied::ChannelLimitReached(max_channels)
                } else {
                    self.channels.insert(record.id.clone(), record.clone());
                    Applied::Created(record)
                }
            }
            Command::DeleteChannel { id, cause } => match self.channels.remove(&id) {
                Some(_) => Applied::Deleted { id, cause },
                None => Applied::NotFound,
            },
            Command::Reset => {
                let ids = self.channels.keys().cloned().collect();
                self.channels.clear();
                Applied::Reset(ids)
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<ClusterState, serde_json::Error> {
        if bytes.is_empty() {
            return Ok(ClusterState::default());
        }
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChannelSpec, Pattern};

    fn record(id: &str) -> ChannelRecord {
        ChannelRecord {
            id: id.into(),
            spec: ChannelSpec {
                pattern: Pattern::PubSub,
                client_limit: -1,
                timeout: 1000,
                include_sender: false,
            },
            token_hash: [7; 32],
            created_at_ms: 1,
        }
    }

    #[test]
    fn create_delete_reset_apply_deterministically() {
        let mut s = ClusterState::default();
        assert!(matches!(
            s.apply(Command::CreateChannel(record("a")), 10),
            Applied::Created(_)
        ));
        assert_eq!(
            s.apply(Command::CreateChannel(record("a")), 10),
            Applied::Duplicate
        );
        s.apply(Command::CreateChannel(record("b")), 10);
        assert_eq!(
            s.apply(Command::CreateChannel(record("c")), 2),
            Applied::ChannelLimitReached(2)
        );
        assert_eq!(
            s.apply(
                Command::DeleteChannel {
                    id: "a".into(),
                    cause: DeleteCause::Deleted
                },
                10
            ),
            Applied::Deleted {
                id: "a".into(),
                cause: DeleteCause::Deleted
            }
        );
        assert_eq!(
            s.apply(
                Command::DeleteChannel {
                    id: "a".into(),
                    cause: DeleteCause::Deleted
                },
                10
            ),
            Applied::NotFound
        );
        assert_eq!(
            s.apply(Command::Reset, 10),
            Applied::Reset(vec!["b".into()])
        );
        assert!(s.channels.is_empty());
    }

    #[test]
    fn snapshot_round_trips_channels_and_members() {
        let mut s = ClusterState::default();
        s.apply(Command::CreateChannel(record("a")), 10);
        s.members.insert(
            5,
            Member {
                id: 5,
                api: "n1:8080".into(),
                peer: "n1:4000".into(),
            },
        );
        let back = ClusterState::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            ClusterState::from_bytes(b"").unwrap(),
            ClusterState::default()
        );
    }
}
