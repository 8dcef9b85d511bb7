//! The Raft node actor: a raft-rs `RawNode` driven by ticks, peer messages and proposals, with
//! the `Ready` loop written out in the order raft-rs documents. Committed commands are applied
//! to `ClusterState` and mirrored into the local `Registry`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType,
    Message as RaftMessage, MessageType, Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::oneshot;

use super::peer::client::{Link, LinkReport, Purpose};
use super::peer::wire::Frame;
use super::relay::Relay;
use super::state::{Applied, ClusterState, Command};
use super::storage::WrsStorage;
use super::validate::{self, Known};
use crate::actors::registry::{DeleteIdle, Mirror, Registry};
use crate::metrics;
use crate::model::{DeleteCause, Member};

/// Addresses learned from traffic before membership names them; more would only be strangers.
const MAX_LEARNED: usize = 16;
/// Raft timing and limits, from the configuration.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub tick: Duration,
    pub heartbeat_ticks: usize,
    pub min_election_ticks: usize,
    pub max_election_ticks: usize,
    pub snapshot_length: u64,
    pub max_channels: usize,
    pub propose_timeout: Duration,
    pub cluster_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("the cluster has no leader right now")]
    NoLeader,
    #[error("the proposal was not committed in time")]
    Timeout,
    #[error("the proposal was dropped (leader change or a pending membership change)")]
    Dropped,
    #[error("another membership change is in progress; retry")]
    Busy,
    #[error("this node is not the leader; the leader is {0}")]
    NotLeader(String),
    #[error("no member with id {0}")]
    UnknownMember(u64),
    #[error("this node is not part of a cluster yet")]
    NotStarted,
    #[error("too many writes are waiting for the cluster; retry")]
    Overloaded,
}

/// Proposals waiting for their commit, at most (each holds one small command, at most a few
/// hundred bytes, so this also bounds their bytes to a few MiB); beyond it writes get a 503.
const MAX_PENDING_PROPOSALS: usize = 10_000;
/// A Raft link's queue, in frames and bytes (Raft retransmits what a full link drops).
const RAFT_LINK_FRAMES: usize = 1024;
const RAFT_LINK_BYTES: usize = 64 << 20;
/// Linearizable reads waiting for the leader's confirmation, at most (a few dozen bytes each).
const MAX_PENDING_READS: usize = 10_000;

/// What `GET /cluster` shows.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub nodes: Vec<(Member, &'static str)>,
    pub me: Member,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Step {
    pub from: u64,
    pub from_addr: String,
    pub msgs: Vec<RaftMessage>,
}

#[derive(Message)]
#[rtype(result = "Result<Applied, ProposeError>")]
pub struct Propose(pub Command);

/// Add a member (as a learner; the leader promotes it once it caught up). Leader only.
#[derive(Message)]
#[rtype(result = "Result<(), ProposeError>")]
pub struct AddMember(pub Member);

#[derive(Message)]
#[rtype(result = "Result<(), ProposeError>")]
pub struct RemoveMember(pub u64);

/// Start a new cluster with this node as its only voter.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Bootstrap;

/// Forget the current cluster and wait, empty, to be added to another one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ResetToJoin;

#[derive(Message)]
#[rtype(result = "ClusterView")]
pub struct GetView;

/// Resolves once this node has applied everything the cluster had committed when it was asked
/// (a Raft ReadIndex): a channel created through another node is then visible here.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CatchUp;

type Waiter = (Instant, oneshot::Sender<Result<Applied, ProposeError>>);

pub struct RaftNode {
    id: u64,
    me: Member,
    raw: RawNode<WrsStorage>,
    storage: WrsStorage,
    state: ClusterState,
    conf_state: ConfState,
    applied: u64,
    started: bool,
    seq: u64,
    waiters: HashMap<u64, Waiter>,
    /// Linearizable reads asked for (`CatchUp`), by request context.
    reads: HashMap<Vec<u8>, (Instant, oneshot::Sender<()>)>,
    /// Reads confirmed by the leader, waiting for this node to apply up to their index.
    reads_confirmed: Vec<(u64, oneshot::Sender<()>)>,
    /// Raft links, one per peer (raft traffic never waits behind relay records).
    peers: HashMap<u64, Link>,
    /// Peer addresses learned from accepted traffic before the state names them (at most
    /// `MAX_LEARNED`).
    learned: HashMap<u64, String>,
    /// When the last heartbeat went to each peer, for the round-trip time its response shows.
    heartbeat_sent: HashMap<u64, Instant>,
    registry: Addr<Registry>,
    relay: Arc<Relay>,
    /// This actor's own address, for the peer senders' reports.
    myself: Option<Addr<RaftNode>>,
    settings: RaftSettings,
    logger: slog::Logger,
}

fn raft_config(id: u64, s: &RaftSettings) -> raft::Config {
    raft::Config {
        id,
        heartbeat_tick: s.heartbeat_ticks,
        election_tick: s.min_election_ticks,
        min_election_tick: s.min_election_ticks,
        max_election_tick: s.max_election_ticks,
        check_quorum: true,
        pre_vote: true,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        ..Default::default()
    }
}

fn logger() -> slog::Logger {
    use slog::Drain;
    slog::Logger::root(slog_stdlog::StdLog.fuse(), slog::o!())
}

impl RaftNode {
    pub fn new(
        me: Member,
        registry: Addr<Registry>,
        relay: Arc<Relay>,
        settings: RaftSettings,
    ) -> RaftNode {
        // Every reason listed at zero from the start, so `rate()` works before the first one.
        for why in validate::Rejected::ALL {
            metrics::PEER_MESSAGES_REJECTED.with_label_values(&[why.label()]);
        }
        let storage = WrsStorage::empty();
        let logger = logger();
        let raw = RawNode::new(&raft_config(me.id, &settings), storage.clone(), &logger)
            .expect("a valid raft configuration");
        RaftNode {
            id: me.id,
            me,
            raw,
            storage,
            state: ClusterState::default(),
            conf_state: ConfState::default(),
            applied: 0,
            started: false,
            seq: 0,
            waiters: HashMap::new(),
            reads: HashMap::new(),
            reads_confirmed: Vec::new(),
            peers: HashMap::new(),
            learned: HashMap::new(),
            heartbeat_sent: HashMap::new(),
            registry,
            relay,
            myself: None,
            settings,
            logger,
        }
    }

    fn reset(&mut self, storage: WrsStorage, state: ClusterState, applied: u64) {
        self.raw = RawNode::new(
            &raft_config(self.id, &self.settings),
            storage.clone(),
            &self.logger,
        )
        .expect("a valid raft configuration");
        self.storage = storage;
        self.conf_state = self.raw.raft.prs().conf().to_conf_state();
        self.applied = applied;
        self.state = state;
        self.mirror_all();
        for (_, (_, tx)) in self.waiters.drain() {
            let _ = tx.send(Err(ProposeError::Dropped));
        }
    }

    /// The whole state replaced (bootstrap, reset, snapshot): the registry follows.
    fn mirror_all(&self) {
        let channels = self.state.channels.values().cloned().collect();
        self.registry.do_send(Mirror::Install(channels));
        self.mirror_members();
    }

    /// Members decide which node owns each channel and where the relay's links go.
    fn mirror_members(&self) {
        let members: Vec<Member> = self.state.members.values().cloned().collect();
        self.relay.set_members(&members);
        self.registry.do_send(Mirror::Members(members));
    }

    fn leader(&self) -> Option<u64> {
        let l = self.raw.raft.leader_id;
        (l != raft::INVALID_ID).then_some(l)
    }

    fn next_context(&mut self) -> (u64, Vec<u8>) {
        self.seq += 1;
        let mut ctx = self.id.to_le_bytes().to_vec();
        ctx.extend_from_slice(&self.seq.to_le_bytes());
        (self.seq, ctx)
    }

    /// The waiter of an entry this node proposed, if any.
    fn take_waiter(
        &mut self,
        context: &[u8],
    ) -> Option<oneshot::Sender<Result<Applied, ProposeError>>> {
        if context.len() != 16 || context[..8] != self.id.to_le_bytes() {
            return None;
        }
        let seq = u64::from_le_bytes(context[8..16].try_into().ok()?);
        self.waiters.remove(&seq).map(|(_, tx)| tx)
    }

    fn peer_addr(&self, id: u64) -> Option<String> {
        self.state
            .members
            .get(&id)
            .map(|m| m.peer.clone())
            .or_else(|| self.learned.get(&id).cloned())
    }

    fn send(&mut self, msgs: Vec<RaftMessage>) {
        let mut by_peer: HashMap<u64, Vec<RaftMessage>> = HashMap::new();
        for m in msgs {
            by_peer.entry(m.to).or_default().push(m);
        }
        for (to, msgs) in by_peer {
            let Some(addr) = self.peer_addr(to) else {
                log::debug!(
                    "no address for raft peer {to}; dropping {} messages",
                    msgs.len()
                );
                self.raw.report_unreachable(to);
                continue;
            };
            let Some(myself) = self.myself.clone() else {
                continue;
            };
            if self
                .peers
                .get(&to)
                .is_none_or(|l| l.addr != addr || l.is_closed())
            {
                let (me, secret) = (&self.me, self.settings.cluster_secret.clone());
                let purpose = Purpose::Raft(myself.recipient());
                let link = Link::open(
                    &Arbiter::current(),
                    me,
                    to,
                    addr,
                    secret,
                    RAFT_LINK_FRAMES,
                    RAFT_LINK_BYTES,
                    purpose,
                );
                self.peers.insert(to, link);
            }
            let snapshot = msgs
                .iter()
                .any(|m| m.get_msg_type() == MessageType::MsgSnapshot);
            if msgs
                .iter()
                .any(|m| m.get_msg_type() == MessageType::MsgHeartbeat)
            {
                self.heartbeat_sent.insert(to, Instant::now());
            }
            let sent = self
                .peers
                .get(&to)
                .is_some_and(|l| l.send(Frame::raft(&msgs).encode(), snapshot));
            if !sent {
                // Raft retransmits; a full link means the peer is not keeping up.
                self.raw.report_unreachable(to);
            }
        }
    }

    fn on_ready(&mut self, ctx: &mut Context<Self>) {
        if !self.raw.has_ready() {
            return;
        }
        let mut ready = self.raw.ready();
        for rs in ready.take_read_states() {
            if let Some((_, tx)) = self.reads.remove(&rs.request_ctx) {
                self.reads_confirmed.push((rs.index, tx));
            }
        }
        if !ready.messages().is_empty() {
            let msgs = ready.take_messages();
            self.send(msgs);
        }
        if *ready.snapshot() != Snapshot::default() {
            let snap = ready.snapshot().clone();
            self.install_snapshot(snap);
        }
        if !ready.entries().is_empty() {
            if let Err(e) = self.storage.append(ready.entries()) {
                log::error!("raft: appending entries failed: {e}");
                return;
            }
        }
        if let Some(hs) = ready.hs() {
            self.storage.set_hardstate(hs.clone());
        }
        if !ready.persisted_messages().is_empty() {
            let msgs = ready.take_persisted_messages();
            self.send(msgs);
        }
        let committed = ready.take_committed_entries();
        self.apply(committed, ctx);
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.storage.set_commit(commit);
        }
        let msgs = light.take_messages();
        self.send(msgs);
        let committed = light.take_committed_entries();
        self.apply(committed, ctx);
        self.raw.advance_apply();
        self.release_reads();
        self.maybe_compact();
        self.update_metrics();
    }

    /// Answers the confirmed reads whose index this node has applied.
    fn release_reads(&mut self) {
        let applied = self.applied;
        let (done, wait): (Vec<_>, Vec<_>) = self
            .reads_confirmed
            .drain(..)
            .partition(|(index, _)| *index <= applied);
        self.reads_confirmed = wait;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }

    fn install_snapshot(&mut self, snap: Snapshot) {
        let meta = snap.get_metadata().clone();
        match ClusterState::from_bytes(&snap.data) {
            Ok(state) => {
                if let Err(e) = self.storage.apply_snapshot(snap) {
                    log::error!("raft: installing snapshot failed: {e}");
                    return;
                }
                log::info!(
                    "raft: installed snapshot at index {} ({} channels, {} members)",
                    meta.index,
                    state.channels.len(),
                    state.members.len()
                );
                self.conf_state = meta.get_conf_state().clone();
                self.applied = meta.index;
                self.state = state;
                self.mirror_all();
                self.started = true;
            }
            Err(e) => log::error!("raft: snapshot data is unreadable: {e}"),
        }
    }

    fn apply(&mut self, entries: Vec<Entry>, ctx: &mut Context<Self>) {
        for entry in entries {
            self.applied = entry.index;
            // Dispatch on the type first: conf changes (even empty V2 ones) must be applied.
            match entry.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(&entry),
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    if let Err(e) = cc.merge_from_bytes(&entry.data) {
                        log::error!("raft: unreadable conf change at {}: {e}", entry.index);
                        continue;
                    }
                    self.apply_conf_change(&entry, cc.clone().into_v2_with_context(), ctx);
                }
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    if let Err(e) = cc.merge_from_bytes(&entry.data) {
                        log::error!("raft: unreadable conf change at {}: {e}", entry.index);
                        continue;
                    }
                    self.apply_conf_change(&entry, cc, ctx);
                }
            }
        }
    }

    fn apply_normal(&mut self, entry: &Entry) {
        let waiter = self.take_waiter(&entry.context);
        if entry.data.is_empty() {
            // A new leader's empty entry, or a proposal raft replaced with an empty one.
            if let Some(tx) = waiter {
                let _ = tx.send(Err(ProposeError::Dropped));
            }
            return;
        }
        let cmd: Command = match serde_json::from_slice(&entry.data) {
            Ok(cmd) => cmd,
            Err(e) => {
                log::error!("raft: unreadable command at {}: {e}", entry.index);
                return;
            }
        };
        let applied = self.state.apply(cmd, self.settings.max_channels);
        match &applied {
            Applied::Created(record) => self.registry.do_send(Mirror::Create(record.clone())),
            Applied::Deleted { id, cause } => self.registry.do_send(Mirror::Delete {
                id: id.clone(),
                cause: *cause,
            }),
            Applied::Reset(ids) => self.registry.do_send(Mirror::Reset(ids.clone())),
            _ => {}
        }
        if let Some(tx) = waiter {
            let _ = tx.send(Ok(applied));
        }
    }

    fn apply_conf_change(&mut self, entry: &Entry, cc: ConfChangeV2, _ctx: &mut Context<Self>) {
        let waiter = self.take_waiter(&entry.context);
        match self.raw.apply_conf_change(&cc) {
            Ok(cs) => {
                self.storage.set_conf_state(cs.clone());
                self.conf_state = cs;
            }
            Err(e) => {
                log::error!("raft: conf change at {} failed: {e}", entry.index);
                if let Some(tx) = waiter {
                    let _ = tx.send(Err(ProposeError::Dropped));
                }
                return;
            }
        }
        for change in cc.get_changes() {
            match change.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    if let Ok(member) = serde_json::from_slice::<Member>(&cc.context) {
                        if member.id == change.node_id {
                            log::info!(
                                "cluster: node {} ({}) is now a {}",
                                member.id,
                                member.api,
                                if change.get_change_type() == ConfChangeType::AddNode {
                                    "voter"
                                } else {
                                    "learner"
                                }
                            );
                            self.state.members.insert(member.id, member);
                        }
                    }
                }
                ConfChangeType::RemoveNode => {
                    let id = change.node_id;
                    log::info!("cluster: node {id} removed");
                    self.state.members.remove(&id);
                    if let Some(peer) = self.peers.remove(&id) {
                        drop(peer);
                    }
                    if id == self.id {
                        log::warn!("cluster: this node was removed from the cluster");
                    }
                }
            }
        }
        self.mirror_members();
        if let Some(tx) = waiter {
            let _ = tx.send(Ok(Applied::NotFound));
        }
    }

    fn maybe_compact(&mut self) {
        if self.storage.take_snapshot_request() {
            let data = self.state.to_bytes();
            match self
                .storage
                .capture(self.applied, self.conf_state.clone(), data)
            {
                Ok(()) => log::info!("raft: captured a snapshot at index {}", self.applied),
                Err(e) => log::warn!("raft: snapshot at {} failed: {e}", self.applied),
            }
        }
        if self.applied < self.storage.snapshot_index() + self.settings.snapshot_length {
            return;
        }
        let data = self.state.to_bytes();
        match self
            .storage
            .compact(self.applied, self.conf_state.clone(), data)
        {
            Ok(()) => log::info!("raft: compacted the log up to index {}", self.applied),
            Err(e) => log::warn!("raft: compaction at {} failed: {e}", self.applied),
        }
    }

    fn update_metrics(&self) {
        metrics::RAFT_TERM.set(self.raw.raft.term as i64);
        metrics::RAFT_COMMIT_INDEX.set(self.raw.raft.raft_log.committed as i64);
        metrics::RAFT_APPLIED_INDEX.set(self.applied as i64);
        let role = role_name(self.raw.raft.state);
        for r in ["leader", "follower", "candidate", "learner"] {
            metrics::CLUSTER_ROLE
                .with_label_values(&[r])
                .set(i64::from(r == role));
        }
    }

    /// Leader duty: promote learners whose log caught up with the commit index.
    fn promote_learners(&mut self, ctx: &mut Context<Self>) {
        if self.raw.raft.state != StateRole::Leader || self.raw.raft.has_pending_conf() {
            return;
        }
        let committed = self.raw.raft.raft_log.committed;
        let ready: Vec<u64> = self
            .conf_state
            .learners
            .iter()
            .copied()
            .filter(|id| {
                self.raw
                    .raft
                    .prs()
                    .get(*id)
                    .is_some_and(|p| p.matched + 1 >= committed)
            })
            .collect();
        if let Some(id) = ready.first() {
            let Some(member) = self.state.members.get(id).cloned() else {
                return;
            };
            log::info!("cluster: promoting node {id} to voter");
            let _ = self.propose_change(ConfChangeType::AddNode, member.id, Some(&member), None);
            self.on_ready(ctx);
        }
    }

    fn propose_change(
        &mut self,
        kind: ConfChangeType,
        node: u64,
        member: Option<&Member>,
        waiter: Option<oneshot::Sender<Result<Applied, ProposeError>>>,
    ) -> Result<(), ProposeError> {
        let mut cc = ConfChange::default();
        cc.set_change_type(kind);
        cc.node_id = node;
        if let Some(m) = member {
            cc.context = serde_json::to_vec(m).unwrap_or_default().into();
        }
        let (seq, context) = self.next_context();
        self.raw
            .propose_conf_change(context, cc)
            .map_err(|_| ProposeError::Dropped)?;
        if let Some(tx) = waiter {
            self.waiters.insert(seq, (Instant::now(), tx));
        }
        Ok(())
    }

    fn expire_waiters(&mut self) {
        let timeout = self.settings.propose_timeout;
        let expired: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, (t, _))| t.elapsed() > timeout)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some((_, tx)) = self.waiters.remove(&k) {
                let _ = tx.send(Err(ProposeError::Timeout));
            }
        }
        // Unanswered reads are dropped: their callers see an error and answer from what they have.
        self.reads.retain(|_, (t, _)| t.elapsed() <= timeout);
    }

    /// Replies from a waiter, as an actor response.
    fn wait_for(
        rx: oneshot::Receiver<Result<Applied, ProposeError>>,
    ) -> ResponseFuture<Result<Applied, ProposeError>> {
        Box::pin(async move { rx.await.unwrap_or(Err(ProposeError::Dropped)) })
    }
}

trait IntoV2WithContext {
    fn into_v2_with_context(self) -> ConfChangeV2;
}

impl IntoV2WithContext for ConfChange {
    fn into_v2_with_context(self) -> ConfChangeV2 {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(self.get_change_type());
        single.node_id = self.node_id;
        let mut v2 = ConfChangeV2::default();
        v2.mut_changes().push(single);
        v2.context = self.context;
        v2
    }
}

pub fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate | StateRole::PreCandidate => "candidate",
    }
}

impl Actor for RaftNode {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.myself = Some(ctx.address());
        ctx.run_interval(self.settings.tick, |act, ctx| {
            act.raw.tick();
            act.on_ready(ctx);
            act.expire_waiters();
            act.promote_learners(ctx);
        });
    }
}

impl Handler<Step> for RaftNode {
    type Result = ();

    fn handle(&mut self, msg: Step, ctx: &mut Context<Self>) {
        let mut passed = 0;
        for m in msg.msgs {
            let known = Known {
                me: self.id,
                link_from: msg.from,
                last_index: self.raw.raft.raft_log.last_index(),
                started: self.started,
                is_member: |id| self.raw.raft.prs().get(id).is_some(),
            };
            if let Err(why) = validate::check(&m, &known) {
                // A restarted node's old id, a stranger, or a message raft-rs would panic on.
                log::debug!(
                    "raft: dropped {:?} from node {}: {}",
                    m.get_msg_type(),
                    msg.from,
                    why.label()
                );
                metrics::PEER_MESSAGES_REJECTED
                    .with_label_values(&[why.label()])
                    .inc();
                continue;
            }
            passed += 1;
            if m.get_msg_type() == MessageType::MsgHeartbeatResponse {
                if let Some(sent) = self.heartbeat_sent.remove(&m.from) {
                    metrics::PEER_RTT.observe(sent.elapsed().as_secs_f64());
                }
            }
            if let Err(e) = self.raw.step(m) {
                log::debug!("raft: step failed: {e}");
            }
        }
        // Only a sender raft accepted may teach us where it lives (bounded: a node waiting to
        // join hears from a handful of nodes, a started one only from its configuration).
        if passed > 0
            && !self.state.members.contains_key(&msg.from)
            && (self.learned.len() < MAX_LEARNED || self.learned.contains_key(&msg.from))
        {
            self.learned.insert(msg.from, msg.from_addr);
        }
        self.on_ready(ctx);
    }
}

impl Handler<Propose> for RaftNode {
    type Result = ResponseFuture<Result<Applied, ProposeError>>;

    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) -> Self::Result {
        if !self.started {
            return Box::pin(async { Err(ProposeError::NotStarted) });
        }
        if self.leader().is_none() {
            return Box::pin(async { Err(ProposeError::NoLeader) });
        }
        if self.waiters.len() >= MAX_PENDING_PROPOSALS {
            return Box::pin(async { Err(ProposeError::Overloaded) });
        }
        let data = match serde_json::to_vec(&msg.0) {
            Ok(d) => d,
            Err(_) => return Box::pin(async { Err(ProposeError::Dropped) }),
        };
        let (seq, context) = self.next_context();
        if self.raw.propose(context, data).is_err() {
            return Box::pin(async { Err(ProposeError::NoLeader) });
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(seq, (Instant::now(), tx));
        self.on_ready(ctx);
        Self::wait_for(rx)
    }
}

impl Handler<DeleteIdle> for RaftNode {
    type Result = ();

    fn handle(&mut self, msg: DeleteIdle, ctx: &mut Context<Self>) {
        let cmd = Command::DeleteChannel {
            id: msg.0,
            cause: DeleteCause::TimedOut,
        };
        // Nobody waits for the answer: the channel asks again until the delete commits.
        drop(<Self as Handler<Propose>>::handle(self, Propose(cmd), ctx));
    }
}

impl Handler<AddMember> for RaftNode {
    type Result = ResponseFuture<Result<(), ProposeError>>;

    fn handle(&mut self, msg: AddMember, ctx: &mut Context<Self>) -> Self::Result {
        if self.raw.raft.state != StateRole::Leader {
            let leader = self.leader().and_then(|l| self.peer_addr(l));
            return Box::pin(async move {
                Err(leader.map_or(ProposeError::NoLeader, ProposeError::NotLeader))
            });
        }
        if self.raw.raft.has_pending_conf() {
            return Box::pin(async { Err(ProposeError::Busy) });
        }
        let member = msg.0;
        if self.state.members.get(&member.id) == Some(&member) {
            return Box::pin(async { Ok(()) });
        }
        // A restarted node comes back with a new id at the same address: retire the old one.
        let stale = self
            .state
            .members
            .values()
            .find(|m| m.api == member.api && m.id != member.id)
            .map(|m| m.id);
        let (tx, rx) = oneshot::channel();
        let proposed = match stale {
            Some(old) => {
                log::info!(
                    "cluster: node {old} at {} is replaced by {}",
                    member.api,
                    member.id
                );
                self.propose_change(ConfChangeType::RemoveNode, old, None, Some(tx))
                    .map(|()| true)
            }
            None => self
                .propose_change(
                    ConfChangeType::AddLearnerNode,
                    member.id,
                    Some(&member),
                    Some(tx),
                )
                .map(|()| false),
        };
        self.on_ready(ctx);
        match proposed {
            Err(e) => Box::pin(async move { Err(e) }),
            // The joiner retries; the next attempt adds it.
            Ok(true) => Box::pin(async move {
                let _ = rx.await;
                Err(ProposeError::Busy)
            }),
            Ok(false) => {
                Box::pin(async move { rx.await.unwrap_or(Err(ProposeError::Dropped)).map(|_| ()) })
            }
        }
    }
}

impl Handler<RemoveMember> for RaftNode {
    type Result = ResponseFuture<Result<(), ProposeError>>;

    fn handle(&mut self, msg: RemoveMember, ctx: &mut Context<Self>) -> Self::Result {
        if !self.state.members.contains_key(&msg.0) {
            return Box::pin(async move { Err(ProposeError::UnknownMember(msg.0)) });
        }
        if self.leader().is_none() {
            return Box::pin(async { Err(ProposeError::NoLeader) });
        }
        let (tx, rx) = oneshot::channel();
        let res = self.propose_change(ConfChangeType::RemoveNode, msg.0, None, Some(tx));
        self.on_ready(ctx);
        match res {
            Err(e) => Box::pin(async move { Err(e) }),
            Ok(()) => {
                Box::pin(async move { rx.await.unwrap_or(Err(ProposeError::Dropped)).map(|_| ()) })
            }
        }
    }
}

impl Handler<Bootstrap> for RaftNode {
    type Result = ();

    fn handle(&mut self, _: Bootstrap, ctx: &mut Context<Self>) {
        if self.started {
            return;
        }
        let mut state = ClusterState::default();
        state.members.insert(self.id, self.me.clone());
        let storage = match WrsStorage::bootstrap(self.id, state.to_bytes()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("raft: bootstrap failed: {e}");
                return;
            }
        };
        self.reset(storage, state, 1);
        self.started = true;
        let _ = self.raw.campaign();
        log::info!(
            "cluster: started a new cluster as node {} ({})",
            self.id,
            self.me.api
        );
        self.on_ready(ctx);
    }
}

impl Handler<ResetToJoin> for RaftNode {
    type Result = ();

    fn handle(&mut self, _: ResetToJoin, _: &mut Context<Self>) {
        self.reset(WrsStorage::empty(), ClusterState::default(), 0);
        self.peers.clear();
        self.started = false;
    }
}

impl Handler<CatchUp> for RaftNode {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, _: CatchUp, ctx: &mut Context<Self>) -> Self::Result {
        if !self.started || self.leader().is_none() || self.reads.len() >= MAX_PENDING_READS {
            return Box::pin(async { false });
        }
        let (_, context) = self.next_context();
        let (tx, rx) = oneshot::channel();
        self.reads.insert(context.clone(), (Instant::now(), tx));
        self.raw.read_index(context);
        self.on_ready(ctx);
        Box::pin(async move {
            tokio::time::timeout(Duration::from_secs(2), rx)
                .await
                .is_ok_and(|r| r.is_ok())
        })
    }
}

impl Handler<GetView> for RaftNode {
    type Result = MessageResult<GetView>;

    fn handle(&mut self, _: GetView, _: &mut Context<Self>) -> Self::Result {
        let leader = if self.started { self.leader() } else { None };
        let nodes = self
            .state
            .members
            .values()
            .map(|m| {
                let role = if Some(m.id) == leader {
                    "leader"
                } else if self.conf_state.learners.contains(&m.id) {
                    "learner"
                } else if m.id == self.id {
                    role_name(self.raw.raft.state)
                } else {
                    "follower"
                };
                (m.clone(), role)
            })
            .collect();
        MessageResult(ClusterView {
            id: self.id,
            leader,
            term: self.raw.raft.term,
            commit: self.raw.raft.raft_log.committed,
            applied: self.applied,
            nodes,
            me: self.me.clone(),
        })
    }
}

impl Handler<LinkReport> for RaftNode {
    type Result = ();

    fn handle(&mut self, msg: LinkReport, _: &mut Context<Self>) {
        match msg {
            LinkReport::Unreachable { to, snapshot } => {
                self.raw.report_unreachable(to);
                if snapshot {
                    self.raw.report_snapshot(to, SnapshotStatus::Failure);
                }
            }
            LinkReport::SnapshotSent(to) => self.raw.report_snapshot(to, SnapshotStatus::Finish),
        }
    }
}
