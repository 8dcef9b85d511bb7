//! The replicated state machine: channels (config + token hash), cluster members and which of
//! them are down. Every node applies the same committed commands in the same order; snapshots
//! are this, as JSON.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{ChannelRecord, DeleteCause, Member};

/// A state-changing command carried in a normal Raft entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    CreateChannel(ChannelRecord),
    DeleteChannel {
        id: String,
        cause: DeleteCause,
    },
    Reset,
    /// The leader has not heard from this member for `WRS_NODE_DOWN_AFTER`: its channels move.
    MemberDown(u64),
    /// A down member answers again.
    MemberUp(u64),
    /// A member restarted on its data directory under new addresses (same id).
    MemberMoved(Member),
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
    /// A member's up/down state changed (`true` = now down).
    Marked {
        id: u64,
        down: bool,
    },
    /// A member's addresses changed.
    Moved(u64),
    /// The command changed nothing (a member already in that state, or not a member).
    Unchanged,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub channels: BTreeMap<String, ChannelRecord>,
    pub members: BTreeMap<u64, Member>,
    /// Members marked down by the leader's failure detector (absent from old snapshots).
    #[serde(default)]
    pub down: BTreeSet<u64>,
    /// The cluster's identity, drawn when its first node bootstrapped (0 in old snapshots): a
    /// data directory of one cluster is never taken up by another.
    #[serde(default)]
    pub cluster: u64,
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
            Command::MemberDown(id) => {
                if self.members.contains_key(&id) && self.down.insert(id) {
                    Applied::Marked { id, down: true }
                } else {
                    Applied::Unchanged
                }
            }
            Command::MemberUp(id) => {
                if self.down.remove(&id) {
                    Applied::Marked { id, down: false }
                } else {
                    Applied::Unchanged
                }
            }
            Command::MemberMoved(member) => match self.members.get_mut(&member.id) {
                Some(m) if *m != member => {
                    let id = member.id;
                    *m = member;
                    Applied::Moved(id)
                }
                _ => Applied::Unchanged,
            },
        }
    }

    /// The members that own channels: every member not marked down (all of them, should
    /// every one be down — an owner that may be dead beats none).
    pub fn up_members(&self) -> BTreeSet<u64> {
        let up: BTreeSet<u64> = self
            .members
            .keys()
            .copied()
            .filter(|id| !self.down.contains(id))
            .collect();
        if up.is_empty() {
            self.members.keys().copied().collect()
        } else {
            up
        }
    }

    /// A member left the configuration: it is neither up nor down any more.
    pub fn remove_member(&mut self, id: u64) {
        self.members.remove(&id);
        self.down.remove(&id);
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
                history: 0,
            },
            token_hash: [7; 32],
            created_at_ms: 1,
        }
    }

    #[test]
    fn state_written_before_channels_had_a_history_still_decodes() {
        let mut s = ClusterState::default();
        s.apply(Command::CreateChannel(record("old")), 10);
        let text = String::from_utf8(s.to_bytes()).unwrap();
        assert!(text.contains(r#","history":0"#), "{text}");
        let before_history = text.replace(r#","history":0"#, "");
        let back = ClusterState::from_bytes(before_history.as_bytes()).unwrap();
        assert_eq!(back.to_bytes(), s.to_bytes());
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
    fn members_are_marked_down_and_up_once_and_owners_come_from_the_up_ones() {
        let mut s = ClusterState::default();
        for id in [1, 2, 3] {
            s.members.insert(
                id,
                Member {
                    id,
                    api: format!("n{id}:8080"),
                    peer: format!("n{id}:4000"),
                },
            );
        }
        assert_eq!(
            s.apply(Command::MemberDown(2), 10),
            Applied::Marked { id: 2, down: true }
        );
        assert_eq!(s.apply(Command::MemberDown(2), 10), Applied::Unchanged);
        assert_eq!(s.apply(Command::MemberDown(9), 10), Applied::Unchanged);
        assert_eq!(s.up_members(), [1, 3].into_iter().collect());
        assert_eq!(
            s.apply(Command::MemberUp(2), 10),
            Applied::Marked { id: 2, down: false }
        );
        assert_eq!(s.apply(Command::MemberUp(2), 10), Applied::Unchanged);
        for id in [1, 2, 3] {
            s.apply(Command::MemberDown(id), 10);
        }
        assert_eq!(s.up_members().len(), 3, "all down: every member still owns");
        s.remove_member(3);
        assert!(!s.down.contains(&3));
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
        s.apply(Command::MemberDown(5), 10);
        let back = ClusterState::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back, s);
        // A snapshot written before members could be down still reads.
        let old = br#"{"channels":{},"members":{}}"#;
        assert!(ClusterState::from_bytes(old).unwrap().down.is_empty());
        assert_eq!(
            ClusterState::from_bytes(b"").unwrap(),
            ClusterState::default()
        );
    }
}
