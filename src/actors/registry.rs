//! The registry actor: this node's mirror of the replicated channel set. It follows committed
//! Raft commands (`Mirror`), owns the map channel id → channel actor (spread over a few
//! arbiters), answers lookups and lists, and turns an idle channel into a delete proposal.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use actix::prelude::*;

use super::channel::{Channel, ChannelIdle, ChannelStats, CloseChannel, Topology};
use super::history::Limits;
use super::peers::Peers;
use crate::error::CloseCause;
use crate::metrics;
use crate::model::{ChannelRecord, DeleteCause};

/// What the REST API knows about a channel without asking its actor.
#[derive(Debug)]
pub struct ChannelInfo {
    pub record: ChannelRecord,
    pub stats: Arc<ChannelStats>,
}

#[derive(Clone)]
pub struct ChannelHandle {
    pub info: Arc<ChannelInfo>,
    pub addr: Addr<Channel>,
    /// The node that sequences the channel (`None` = this node): it has the live numbers.
    pub owner: Option<u64>,
}

/// Committed changes, sent by the Raft node in log order.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Mirror {
    Create(ChannelRecord),
    Delete {
        id: String,
        cause: DeleteCause,
    },
    Reset(Vec<String>),
    /// A snapshot: the full channel set replaces whatever was here.
    Install(Vec<ChannelRecord>),
    /// The members that are up (they decide which node sequences each channel), this
    /// node's id (it changes when the node rejoins as a new member), and whether this node's
    /// clients must be re-admitted at their owners (it was down, or rejoined).
    Members {
        me: u64,
        up: BTreeSet<u64>,
        /// Every member that is up, learners included: the nodes whose clients an owner keeps.
        serving: BTreeSet<u64>,
        readmit: bool,
    },
}

#[derive(Message)]
#[rtype(result = "Option<ChannelHandle>")]
pub struct Get(pub String);

/// The node that sequences channel `id` by the current members, whether or not the channel is
/// mirrored here yet (`None` = this node, or no member is up).
#[derive(Message)]
#[rtype(result = "Option<u64>")]
pub struct Owner(pub String);

/// Every channel, with the node that sequences it (`None` = this node).
#[derive(Message)]
#[rtype(result = "Vec<(Arc<ChannelInfo>, Option<u64>)>")]
pub struct List;

/// Closes every channel's clients with `1001` and refuses new work.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Shutdown;

/// The registry asks the cluster to delete a channel that timed out; the commit (`Mirror`)
/// then closes it on every node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeleteIdle(pub String);

/// Tells the registry where to send delete requests (the cluster's Raft node).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetCluster(pub Recipient<DeleteIdle>);

pub struct Registry {
    channels: HashMap<String, ChannelHandle>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    node_id: u64,
    /// The members that are up: channels are owned by these.
    members: Arc<BTreeSet<u64>>,
    /// The members that are up, learners included: their clients may hold seats.
    serving: Arc<BTreeSet<u64>>,
    peers: Arc<dyn Peers>,
    cluster: Option<Recipient<DeleteIdle>>,
    shutting_down: bool,
    /// `WRS_HISTORY_BYTES` and the node's history budget, shared by every channel.
    history_limits: Limits,
}

/// The member that sequences a channel (and runs its inactivity timeout): rendezvous hashing
/// over member ids, so every node agrees and a membership change moves as few channels as
/// possible.
pub fn owner_of(channel: &str, members: &BTreeSet<u64>) -> Option<u64> {
    members.iter().copied().max_by_key(|m| {
        // FNV-1a over the id and member: stable across processes and versions.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in channel.bytes().chain(m.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    })
}

impl Registry {
    pub fn new(
        arbiters: Vec<ArbiterHandle>,
        node_id: u64,
        peers: Arc<dyn Peers>,
        history_limits: Limits,
    ) -> Registry {
        Registry {
            channels: HashMap::new(),
            arbiters,
            next_arbiter: 0,
            node_id,
            members: Arc::default(),
            serving: Arc::default(),
            peers,
            cluster: None,
            shutting_down: false,
            history_limits,
        }
    }

    fn create(&mut self, record: ChannelRecord, ctx: &mut Context<Self>) {
        if self.channels.contains_key(&record.id) {
            return;
        }
        let info = Arc::new(ChannelInfo {
            record,
            stats: Arc::new(ChannelStats::new()),
        });
        let (id, spec, stats, me) = (
            info.record.id.clone(),
            info.record.spec.clone(),
            Arc::clone(&info.stats),
            ctx.address().recipient(),
        );
        let (owner, peers) = (self.remote_owner(&id), Arc::clone(&self.peers));
        let (serving, history_limits) = (Arc::clone(&self.serving), self.history_limits.clone());
        let make = move |_: &mut Context<Channel>| {
            Channel::new(
                id,
                spec,
                stats,
                me,
                (owner, serving),
                (peers, history_limits),
            )
        };
        let addr = if self.arbiters.is_empty() {
            Channel::create(make)
        } else {
            self.next_arbiter = (self.next_arbiter + 1) % self.arbiters.len();
            Channel::start_in_arbiter(&self.arbiters[self.next_arbiter], make)
        };
        log::info!(
            "channel {} created ({}, clientLimit {}, timeout {})",
            info.record.id,
            info.record.spec.pattern,
            info.record.spec.client_limit,
            info.record.spec.timeout
        );
        self.channels.insert(
            info.record.id.clone(),
            ChannelHandle {
                info,
                addr,
                owner: None,
            },
        );
        metrics::CHANNELS.set(self.channels.len() as i64);
    }

    /// `None` if this node sequences the channel, else the owner's id.
    fn remote_owner(&self, id: &str) -> Option<u64> {
        owner_of(id, &self.members).filter(|o| *o != self.node_id)
    }

    fn remove(&mut self, id: &str, cause: CloseCause) {
        if let Some(handle) = self.channels.remove(id) {
            handle.addr.do_send(CloseChannel(cause));
            log::info!("channel {id} {}", cause.reason());
        }
        metrics::CHANNELS.set(self.channels.len() as i64);
    }

    fn close_all(&mut self, cause: CloseCause) -> usize {
        let n = self.channels.len();
        for (_, handle) in self.channels.drain() {
            handle.addr.do_send(CloseChannel(cause));
        }
        metrics::CHANNELS.set(0);
        n
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Mirror> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Mirror, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        match msg {
            Mirror::Create(record) => self.create(record, ctx),
            Mirror::Delete { id, cause } => {
                let cause = match cause {
                    DeleteCause::Deleted => CloseCause::ChannelDeleted,
                    DeleteCause::TimedOut => CloseCause::ChannelTimedOut,
                };
                self.remove(&id, cause);
            }
            Mirror::Reset(ids) => {
                log::info!("reset: {} channels deleted", ids.len());
                for id in ids {
                    self.remove(&id, CloseCause::ChannelDeleted);
                }
            }
            Mirror::Install(records) => {
                let keep: BTreeSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
                let gone: Vec<String> = self
                    .channels
                    .keys()
                    .filter(|id| !keep.contains(id.as_str()))
                    .cloned()
                    .collect();
                for id in gone {
                    self.remove(&id, CloseCause::ChannelDeleted);
                }
                for record in records {
                    self.create(record, ctx);
                }
            }
            Mirror::Members {
                me,
                up,
                serving,
                readmit,
            } => {
                let readmit = readmit || me != self.node_id;
                if up != *self.members || serving != *self.serving || readmit {
                    self.members = Arc::new(up);
                    self.serving = Arc::new(serving);
                    self.node_id = me;
                    for (id, handle) in &self.channels {
                        handle.addr.do_send(Topology {
                            owner: self.remote_owner(id),
                            up: Arc::clone(&self.serving),
                            readmit,
                        });
                    }
                }
            }
        }
    }
}

impl Handler<Get> for Registry {
    type Result = Option<ChannelHandle>;

    fn handle(&mut self, msg: Get, _: &mut Context<Self>) -> Self::Result {
        if self.shutting_down {
            return None;
        }
        let mut handle = self.channels.get(&msg.0).cloned()?;
        handle.owner = self.remote_owner(&msg.0);
        Some(handle)
    }
}

impl Handler<Owner> for Registry {
    type Result = Option<u64>;

    fn handle(&mut self, msg: Owner, _: &mut Context<Self>) -> Self::Result {
        self.remote_owner(&msg.0)
    }
}

impl Handler<List> for Registry {
    type Result = Vec<(Arc<ChannelInfo>, Option<u64>)>;

    fn handle(&mut self, _: List, _: &mut Context<Self>) -> Self::Result {
        let mut all: Vec<_> = self
            .channels
            .values()
            .map(|h| (Arc::clone(&h.info), self.remote_owner(&h.info.record.id)))
            .collect();
        all.sort_by(|(a, _), (b, _)| {
            (a.record.created_at_ms, &a.record.id).cmp(&(b.record.created_at_ms, &b.record.id))
        });
        all
    }
}

impl Handler<Shutdown> for Registry {
    type Result = usize;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> usize {
        self.shutting_down = true;
        self.close_all(CloseCause::ShuttingDown)
    }
}

impl Handler<SetCluster> for Registry {
    type Result = ();

    fn handle(&mut self, msg: SetCluster, _: &mut Context<Self>) {
        self.cluster = Some(msg.0);
    }
}

impl Handler<ChannelIdle> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ChannelIdle, _: &mut Context<Self>) {
        if self.shutting_down || !self.channels.contains_key(&msg.id) {
            return;
        }
        // One node proposes the delete; the commit closes the clients on every node.
        if owner_of(&msg.id, &self.members) != Some(self.node_id) {
            return;
        }
        if let Some(cluster) = &self.cluster {
            log::info!("channel {} is idle past its timeout; deleting", msg.id);
            cluster.do_send(DeleteIdle(msg.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_owner_is_stable_and_spreads_over_members() {
        let members: BTreeSet<u64> = [1, 2, 3].into_iter().collect();
        let mut counts = HashMap::new();
        for i in 0..300 {
            let id = format!("ch{i}");
            let owner = owner_of(&id, &members).unwrap();
            assert_eq!(owner_of(&id, &members), Some(owner));
            *counts.entry(owner).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(counts.values().all(|&c| c > 50), "{counts:?}");
        assert_eq!(owner_of("x", &BTreeSet::new()), None);
    }
}
