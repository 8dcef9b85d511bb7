//! The Raft node actor: the `Core` (consensus and the replicated state, pure) wired to the
//! world — ticks from a timer, messages from peer links, proposals from the API. It moves each
//! `Output` of the core to the network (one link per peer), to the waiting callers and into the
//! local `Registry`, and keeps the metrics. When this node must rejoin as a new member
//! (`Rejoin`), it takes a new id here and everything that names it follows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use raft::prelude::{ConfChangeType, Message as RaftMessage, MessageType};
use raft::{SnapshotStatus, StateRole};
use tokio::sync::oneshot;

pub use super::core::ProposeError;
use super::core::{Change, Core, CoreSettings, Output};
use super::peer::client::{Link, LinkReport, LinkSettings, Purpose};
use super::peer::wire::Frame;
use super::relay::Relay;
use super::state::{Applied, Command};
use super::storage::disk::{Disk, Restored};
use super::validate::Rejected;
use crate::actors::registry::{DeleteIdle, Mirror, Registry};
use crate::metrics;
use crate::model::{DeleteCause, Member};

/// Addresses learned from traffic before membership names them; more would only be strangers.
const MAX_LEARNED: usize = 16;
/// Proposals waiting for their commit, at most (each holds one small command, at most a few
/// hundred bytes, so this also bounds their bytes to a few MiB); beyond it writes get a 503.
const MAX_PENDING_PROPOSALS: usize = 10_000;
/// Linearizable reads waiting for the leader's confirmation, at most (a few dozen bytes each).
const MAX_PENDING_READS: usize = 10_000;
/// A Raft link's queue, in frames and bytes (Raft retransmits what a full link drops).
const RAFT_LINK_FRAMES: usize = 1024;
const RAFT_LINK_BYTES: usize = 64 << 20;

/// Raft timing and limits, from the configuration.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub tick: Duration,
    pub core: CoreSettings,
    pub propose_timeout: Duration,
    pub cluster_secret: Option<String>,
    /// `WRS_NODE_DOWN_AFTER`: also how long a peer link may make no progress before it is cut.
    pub down_after: Duration,
}

/// What `GET /cluster` shows.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub nodes: Vec<NodeView>,
    pub me: Member,
    /// This node applied its own removal: it must rejoin as a new member.
    pub removed: bool,
    /// The cluster's identity (0 before this node is part of one).
    pub cluster: u64,
}

/// One member as this node sees it.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub member: Member,
    pub role: &'static str,
    /// Marked down by the leader's failure detector (committed).
    pub down: bool,
    /// Milliseconds since this node last heard from it (`None`: never).
    pub heard_ago_ms: Option<u64>,
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

/// This node was removed from its cluster: take a new id and wait, not started, to be added
/// again (the channels stay in the registry until the cluster's state arrives). Answers the
/// new identity.
#[derive(Message)]
#[rtype(result = "Member")]
pub struct Rejoin;

/// Resolves once this node has applied everything the cluster had committed when it was asked
/// (a Raft ReadIndex): a channel created through another node is then visible here.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CatchUp;

type Waiter = (Instant, oneshot::Sender<Result<Applied, ProposeError>>);

pub struct RaftNode {
    core: Core,
    me: Member,
    /// This node's proposals waiting for their result, by the core's sequence number.
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
    /// This node was marked down (or rejoined under a new id) and its clients must be
    /// re-admitted at their channels' owners once it is up.
    readmit: bool,
    /// `WRS_DATA_DIR`'s store, for every core this node starts over with.
    disk: Option<Arc<Disk>>,
    settings: RaftSettings,
    /// An `on_ready` is queued behind the mailbox messages at hand (`ready_soon`).
    ready_queued: bool,
}

/// Where a node's Raft state comes from: memory only, a fresh data directory, or the one it
/// was restarted on.
pub struct Boot {
    pub disk: Option<Arc<Disk>>,
    /// What the data directory held (a member's snapshot and log, or just an identity).
    pub restored: Option<Restored>,
}

impl Boot {
    /// Whether this node restarts as a member of a cluster (it must not look for one).
    pub fn is_member(&self) -> bool {
        self.restored.as_ref().is_some_and(|r| r.snapshot.is_some())
    }
}

fn logger() -> slog::Logger {
    use slog::Drain;
    slog::Logger::root(slog_stdlog::StdLog.fuse(), slog::o!())
}

impl RaftNode {
    /// A node as `boot` says: restored from its data directory, or empty. Fails only for a
    /// data directory whose log cannot be taken up again.
    pub fn new(
        me: Member,
        registry: Addr<Registry>,
        relay: Arc<Relay>,
        settings: RaftSettings,
        boot: Boot,
    ) -> Result<RaftNode, String> {
        // Every reason listed at zero from the start, so `rate()` works before the first one.
        for why in Rejected::ALL {
            metrics::PEER_MESSAGES_REJECTED.with_label_values(&[why.label()]);
        }
        let core = match (boot.restored, &boot.disk) {
            (Some(restored), Some(disk)) if restored.snapshot.is_some() => Core::restore(
                me.clone(),
                settings.core.clone(),
                restored,
                Arc::clone(disk),
                logger(),
            )?,
            _ => Core::new(
                me.clone(),
                settings.core.clone(),
                boot.disk.clone(),
                logger(),
            ),
        };
        Ok(RaftNode {
            core,
            me,
            waiters: HashMap::new(),
            reads: HashMap::new(),
            reads_confirmed: Vec::new(),
            peers: HashMap::new(),
            learned: HashMap::new(),
            heartbeat_sent: HashMap::new(),
            registry,
            relay,
            myself: None,
            readmit: false,
            disk: boot.disk,
            settings,
            ready_queued: false,
        })
    }

    /// The whole state replaced (bootstrap, reset, snapshot): the registry follows.
    fn mirror_all(&mut self) {
        let channels = self.core.state().channels.values().cloned().collect();
        self.registry.do_send(Mirror::Install(channels));
        self.mirror_members();
    }

    /// Members decide where the relay's links go; the members that are up decide which node
    /// owns each channel.
    fn mirror_members(&mut self) {
        let members: Vec<Member> = self.core.state().members.values().cloned().collect();
        self.relay.set_members(&members, &self.core.state().down);
        let down = self.core.state().down.len();
        metrics::CLUSTER_MEMBERS
            .with_label_values(&["up"])
            .set((members.len() - down.min(members.len())) as i64);
        metrics::CLUSTER_MEMBERS
            .with_label_values(&["down"])
            .set(down as i64);
        let up = self.core.owners();
        let readmit = self.readmit && up.contains(&self.me.id);
        if readmit {
            self.readmit = false;
        }
        self.registry.do_send(Mirror::Members {
            me: self.me.id,
            up,
            serving: self.core.state().up_members(),
            readmit,
        });
    }

    /// Where node `id` listens: what its accepted traffic said last (a member restarted on
    /// its data directory under a new address is reachable before its move commits), else
    /// what the state says.
    fn peer_addr(&self, id: u64) -> Option<String> {
        self.learned
            .get(&id)
            .cloned()
            .or_else(|| self.core.state().members.get(&id).map(|m| m.peer.clone()))
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
                self.core.report_unreachable(to);
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
                let link = Link::open(
                    &Arbiter::current(),
                    &self.me,
                    to,
                    addr,
                    LinkSettings {
                        secret: self.settings.cluster_secret.clone(),
                        frames: RAFT_LINK_FRAMES,
                        bytes: RAFT_LINK_BYTES,
                        stall: self.settings.down_after,
                    },
                    Purpose::Raft(myself.recipient()),
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
                self.core.report_unreachable(to);
            }
        }
    }

    /// Moves what the core produced to the network, the callers and the registry.
    fn on_ready(&mut self) {
        let Output {
            messages,
            results,
            changes,
            reads,
        } = self.core.advance();
        self.send(messages);
        for (ctx, index) in reads {
            if let Some((_, tx)) = self.reads.remove(&ctx) {
                self.reads_confirmed.push((index, tx));
            }
        }
        for change in changes {
            match change {
                Change::Created(record) => self.registry.do_send(Mirror::Create(record)),
                Change::Deleted { id, cause } => {
                    self.registry.do_send(Mirror::Delete { id, cause })
                }
                Change::Reset(ids) => self.registry.do_send(Mirror::Reset(ids)),
                Change::Installed => self.mirror_all(),
                Change::Members => self.mirror_members(),
                Change::Removed(id) => {
                    self.peers.remove(&id);
                    self.heartbeat_sent.remove(&id);
                    metrics::CLUSTER_REMOVALS.inc();
                }
                Change::Marked { id, down } => {
                    if down {
                        metrics::CLUSTER_FAILOVERS.inc();
                    }
                    if down && id == self.me.id {
                        // Owners forgot this node's clients when it went down: once it is up
                        // again, its channels re-admit them (even if it is down and up again
                        // within this one Ready).
                        self.readmit = true;
                    }
                }
            }
        }
        for (seq, result) in results {
            if let Some((_, tx)) = self.waiters.remove(&seq) {
                let _ = tx.send(result);
            }
        }
        self.release_reads();
        self.update_metrics();
    }

    /// Runs `on_ready` once, after the mailbox messages that are already waiting: proposals and
    /// peer messages that arrive together then share one Ready — one append, one fsync with
    /// `WRS_DATA_DIR`, one message per peer — instead of one each. actix polls spawned futures
    /// after it has drained (up to 256 of) the mailbox's messages, so the wait is no longer
    /// than that batch.
    fn ready_soon(&mut self, ctx: &mut Context<Self>) {
        if !self.ready_queued {
            self.ready_queued = true;
            ctx.spawn(fut::ready(()).map(|(), act: &mut Self, _| {
                act.ready_queued = false;
                act.on_ready();
            }));
        }
    }

    /// Answers the confirmed reads whose index this node has applied.
    fn release_reads(&mut self) {
        let applied = self.core.applied();
        let (done, wait): (Vec<_>, Vec<_>) = self
            .reads_confirmed
            .drain(..)
            .partition(|(index, _)| *index <= applied);
        self.reads_confirmed = wait;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }

    fn update_metrics(&self) {
        metrics::RAFT_TERM.set(self.core.term() as i64);
        metrics::RAFT_COMMIT_INDEX.set(self.core.commit() as i64);
        metrics::RAFT_APPLIED_INDEX.set(self.core.applied() as i64);
        let role = role_name(self.core.role());
        for r in ["leader", "follower", "candidate", "learner"] {
            metrics::CLUSTER_ROLE
                .with_label_values(&[r])
                .set(i64::from(r == role));
        }
    }

    /// Proposes a membership change and waits for it (None: nobody waits).
    fn change(
        &mut self,
        kind: ConfChangeType,
        node: u64,
        member: Option<&Member>,
    ) -> Result<oneshot::Receiver<Result<Applied, ProposeError>>, ProposeError> {
        let seq = self.core.propose_change(kind, node, member)?;
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(seq, (Instant::now(), tx));
        self.on_ready();
        Ok(rx)
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

    fn drop_waiters(&mut self) {
        for (_, (_, tx)) in self.waiters.drain() {
            let _ = tx.send(Err(ProposeError::Dropped));
        }
    }
}

/// Awaits a waiter, as an actor response.
fn answer(
    rx: oneshot::Receiver<Result<Applied, ProposeError>>,
) -> ResponseFuture<Result<Applied, ProposeError>> {
    Box::pin(async move { rx.await.unwrap_or(Err(ProposeError::Dropped)) })
}

fn fail<T: 'static>(e: ProposeError) -> ResponseFuture<Result<T, ProposeError>> {
    Box::pin(async move { Err(e) })
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
        // A restored core has its state to mirror and its committed entries to apply.
        self.on_ready();
        ctx.run_interval(self.settings.tick, |act, _| {
            act.core.tick();
            act.on_ready();
            act.expire_waiters();
        });
    }
}

impl Handler<Step> for RaftNode {
    type Result = ();

    fn handle(&mut self, msg: Step, ctx: &mut Context<Self>) {
        let mut passed = 0;
        for m in msg.msgs {
            let (kind, from) = (m.get_msg_type(), m.from);
            if let Err(why) = self.core.step(msg.from, m) {
                // A restarted node's old id, a stranger, or a message raft-rs would panic on.
                log::debug!(
                    "raft: dropped {kind:?} from node {}: {}",
                    msg.from,
                    why.label()
                );
                metrics::PEER_MESSAGES_REJECTED
                    .with_label_values(&[why.label()])
                    .inc();
                continue;
            }
            passed += 1;
            if kind == MessageType::MsgHeartbeatResponse {
                if let Some(sent) = self.heartbeat_sent.remove(&from) {
                    metrics::PEER_RTT.observe(sent.elapsed().as_secs_f64());
                }
            }
        }
        // Only a sender raft accepted may teach us where it lives (bounded: a node waiting to
        // join hears from a handful of nodes, a started one only from its configuration). A
        // member's entry is kept only while it differs from the state's.
        let listed = self.core.state().members.get(&msg.from).map(|m| &m.peer);
        if passed > 0 && listed == Some(&msg.from_addr) {
            self.learned.remove(&msg.from);
        } else if passed > 0
            && (self.learned.len() < MAX_LEARNED || self.learned.contains_key(&msg.from))
        {
            self.learned.insert(msg.from, msg.from_addr);
        }
        self.ready_soon(ctx);
    }
}

impl Handler<Propose> for RaftNode {
    type Result = ResponseFuture<Result<Applied, ProposeError>>;

    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) -> Self::Result {
        if self.waiters.len() >= MAX_PENDING_PROPOSALS {
            return fail(ProposeError::Overloaded);
        }
        let seq = match self.core.propose(&msg.0) {
            Ok(seq) => seq,
            Err(e) => return fail(e),
        };
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(seq, (Instant::now(), tx));
        self.ready_soon(ctx);
        answer(rx)
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

    fn handle(&mut self, msg: AddMember, _: &mut Context<Self>) -> Self::Result {
        if self.core.role() != StateRole::Leader {
            let leader = self.core.leader().and_then(|l| self.peer_addr(l));
            return fail(leader.map_or(ProposeError::NoLeader, ProposeError::NotLeader));
        }
        if self.core.has_pending_conf() {
            return fail(ProposeError::Busy);
        }
        let member = msg.0;
        if self.core.state().members.get(&member.id) == Some(&member) {
            return Box::pin(async { Ok(()) });
        }
        // A restarted node comes back with a new id at the same address: retire the old one.
        let stale = self
            .core
            .state()
            .members
            .values()
            .find(|m| m.api == member.api && m.id != member.id)
            .map(|m| m.id);
        if let Some(old) = stale {
            log::info!(
                "cluster: node {old} at {} is replaced by {}",
                member.api,
                member.id
            );
            return match self.change(ConfChangeType::RemoveNode, old, None) {
                Err(e) => fail(e),
                // The joiner retries; the next attempt adds it.
                Ok(rx) => Box::pin(async move {
                    let _ = rx.await;
                    Err(ProposeError::Busy)
                }),
            };
        }
        match self.change(ConfChangeType::AddLearnerNode, member.id, Some(&member)) {
            Err(e) => fail(e),
            Ok(rx) => {
                Box::pin(async move { rx.await.unwrap_or(Err(ProposeError::Dropped)).map(|_| ()) })
            }
        }
    }
}

impl Handler<RemoveMember> for RaftNode {
    type Result = ResponseFuture<Result<(), ProposeError>>;

    fn handle(&mut self, msg: RemoveMember, _: &mut Context<Self>) -> Self::Result {
        if !self.core.state().members.contains_key(&msg.0) {
            return fail(ProposeError::UnknownMember(msg.0));
        }
        if self.core.leader().is_none() {
            return fail(ProposeError::NoLeader);
        }
        match self.change(ConfChangeType::RemoveNode, msg.0, None) {
            Err(e) => fail(e),
            Ok(rx) => {
                Box::pin(async move { rx.await.unwrap_or(Err(ProposeError::Dropped)).map(|_| ()) })
            }
        }
    }
}

impl Handler<Bootstrap> for RaftNode {
    type Result = ();

    fn handle(&mut self, _: Bootstrap, _: &mut Context<Self>) {
        if self.core.started() {
            return;
        }
        self.drop_waiters();
        match self.core.bootstrap() {
            Ok(()) => log::info!(
                "cluster: started a new cluster as node {} ({})",
                self.me.id,
                self.me.api
            ),
            Err(e) => log::error!("raft: bootstrap failed: {e}"),
        }
        self.on_ready();
    }
}

impl Handler<ResetToJoin> for RaftNode {
    type Result = ();

    fn handle(&mut self, _: ResetToJoin, _: &mut Context<Self>) {
        self.core.reset_to_join();
        self.drop_waiters();
        self.peers.clear();
        self.on_ready();
    }
}

impl Handler<CatchUp> for RaftNode {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, _: CatchUp, _: &mut Context<Self>) -> Self::Result {
        if self.reads.len() >= MAX_PENDING_READS {
            return Box::pin(async { false });
        }
        let Some(context) = self.core.read_index() else {
            return Box::pin(async { false });
        };
        let (tx, rx) = oneshot::channel();
        self.reads.insert(context, (Instant::now(), tx));
        self.on_ready();
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
        let leader = self.core.leader();
        let tick_ms = self.settings.tick.as_millis() as u64;
        let nodes = self
            .core
            .state()
            .members
            .values()
            .map(|m| {
                let role = if Some(m.id) == leader {
                    "leader"
                } else if self.core.is_learner(m.id) {
                    "learner"
                } else if m.id == self.me.id {
                    role_name(self.core.role())
                } else {
                    "follower"
                };
                NodeView {
                    member: m.clone(),
                    role,
                    down: self.core.is_down(m.id),
                    heard_ago_ms: self.core.heard_ago(m.id).map(|t| t * tick_ms),
                }
            })
            .collect();
        MessageResult(ClusterView {
            id: self.me.id,
            leader,
            term: self.core.term(),
            commit: self.core.commit(),
            applied: self.core.applied(),
            nodes,
            me: self.me.clone(),
            removed: self.core.removed(),
            cluster: self.core.state().cluster,
        })
    }
}

impl Handler<Rejoin> for RaftNode {
    type Result = MessageResult<Rejoin>;

    fn handle(&mut self, _: Rejoin, _: &mut Context<Self>) -> Self::Result {
        let old = self.me.id;
        // A new id, never the old one: the old one's votes and log are gone with its state,
        // and Raft must not meet a member that forgot what it promised.
        self.me.id = super::random_node_id();
        log::info!(
            "cluster: node {old} was removed; rejoining as node {}",
            self.me.id
        );
        self.core = Core::new(
            self.me.clone(),
            self.settings.core.clone(),
            self.disk.clone(),
            logger(),
        );
        self.drop_waiters();
        self.reads.clear();
        self.reads_confirmed.clear();
        self.peers.clear();
        self.learned.clear();
        self.heartbeat_sent.clear();
        self.relay.set_me(self.me.clone());
        self.readmit = true;
        metrics::CLUSTER_REJOINS.inc();
        self.update_metrics();
        MessageResult(self.me.clone())
    }
}

impl Handler<LinkReport> for RaftNode {
    type Result = ();

    fn handle(&mut self, msg: LinkReport, _: &mut Context<Self>) {
        match msg {
            LinkReport::Unreachable { to, snapshot } => {
                self.core.report_unreachable(to);
                if snapshot {
                    self.core.report_snapshot(to, SnapshotStatus::Failure);
                }
            }
            LinkReport::SnapshotSent(to) => self.core.report_snapshot(to, SnapshotStatus::Finish),
        }
    }
}
