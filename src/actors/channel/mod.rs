//! The channel actor: one per channel on every node. All of a channel's traffic is sequenced
//! by one actor in the cluster — the one on the channel's owner node, in the `Owner` role
//! (`owner.rs`: every client, the pattern, the deliveries); on the other nodes the actor is in
//! the `Proxy` role (`proxy.rs`: this node's clients, forwarded to the owner through `Peers`).
//! This file is what both share: the messages, the live numbers and inbox budget, the
//! inactivity timer, pacing, and the role changes when the members change (`Topology`), and
//! the server-side publish and presence queries (answered by the owner; a proxy asks it).
//!
//! Why one actor with two roles rather than two actors: sessions hold their channel's address
//! for their whole life, and ownership moves under them (a node joins, goes down, comes back);
//! a role change keeps every session's address and every outbox where it is.

mod owner;
mod proxy;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::owner::{At, Owner};
use self::proxy::{hand_over, Proxy};
use super::history::Limits;
use super::outbox::{Backlog, Outbox, PushError};
use super::peers::{AskFuture, Peers, SendFuture};
use crate::error::CloseCause;
use crate::metrics::{self, PatternCounters};
use crate::model::{
    Admission, ChannelRefused, ChannelSpec, ClientId, Data, JoinRefused, Pattern, Present,
};

/// Live numbers the REST API reads without asking the actor (lists stay cheap), and the
/// channel's inbox budget that senders draw on.
#[derive(Debug)]
pub struct ChannelStats {
    pub clients: AtomicU64,
    /// Milliseconds after `born` of the last activity.
    last_activity: AtomicU64,
    born: Instant,
    pub inbox: Inbox,
    /// An echo channel this node has sequenced since its creation (its owner never moved):
    /// its sessions answer their own messages without the actor (`Session::echo`).
    echo_here: AtomicBool,
}

impl ChannelStats {
    pub fn new() -> ChannelStats {
        ChannelStats {
            clients: AtomicU64::new(0),
            last_activity: AtomicU64::new(0),
            born: Instant::now(),
            inbox: Inbox(Arc::new(Semaphore::new(Inbox::BYTES))),
            echo_here: AtomicBool::new(false),
        }
    }

    /// Whether a session may echo its client's messages itself (see `echo_here`).
    pub fn echoes_here(&self) -> bool {
        self.echo_here.load(Ordering::Acquire)
    }

    fn set_echo_here(&self, on: bool) {
        self.echo_here.store(on, Ordering::Release);
    }

    /// Activity now: the inactivity timeout counts from here.
    pub fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.born).as_millis() as u64;
        self.last_activity.store(ms, Ordering::Relaxed);
    }

    /// Milliseconds since the last activity.
    pub fn idle_ms(&self) -> u64 {
        let now = self.born.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_activity.load(Ordering::Relaxed))
    }

    /// Milliseconds left until `timeout` fires; `-1` for no timeout.
    pub fn countdown(&self, timeout: i64) -> i64 {
        if timeout < 0 {
            return -1;
        }
        (timeout as u64).saturating_sub(self.idle_ms()) as i64
    }
}

impl Default for ChannelStats {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), JoinRefused>")]
pub struct Join {
    pub id: ClientId,
    pub outbox: Arc<Outbox>,
    /// Stored messages to replay first (`history=K` on connect; 0 = none).
    pub history: usize,
}

/// A client of another node joins this (owner) channel.
#[derive(Message)]
#[rtype(result = "Result<(), JoinRefused>")]
pub struct JoinRemote {
    pub id: ClientId,
    pub node: u64,
    /// When it connected to its node (ms since the Unix epoch; 0 = unknown, taken as now).
    pub connected_at_ms: u64,
    /// Stored messages to replay to it first (0 = none).
    pub history: usize,
}

/// A server-side publish (`POST /channels/{id}/messages`): the body, routed by the pattern
/// as a message from no client. Answers how many clients it was handed to. `forwarded`: it
/// came from another node, which took this one for the owner (a proxy does not forward it
/// again, so two nodes that disagree for a moment cannot bounce it between them).
#[derive(Message)]
#[rtype(result = "Result<u64, ChannelRefused>")]
pub struct PublishHttp {
    pub data: Data,
    pub forwarded: bool,
}

/// Presence: every client of the channel across the cluster, as the owner knows them.
#[derive(Message)]
#[rtype(result = "Result<Vec<Present>, ChannelRefused>")]
pub struct ListClients {
    pub forwarded: bool,
}

/// Frames the owner routed to clients of this node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverLocal {
    /// The node that routed them: only the owner this node knows of is listened to.
    pub from: u64,
    pub to: Vec<ClientId>,
    pub frame: Bytes,
}

/// The members changed: the channel's owner (`None` = this node), the members that are up
/// (learners included: the nodes whose clients may hold seats), and whether the owner forgot this node's clients (it was down, or rejoined under a new id)
/// so that they must be admitted again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Topology {
    pub owner: Option<u64>,
    pub up: Arc<BTreeSet<u64>>,
    pub readmit: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub id: ClientId,
}

/// The bytes of messages handed to a channel that it has not routed yet. The actor's mailbox
/// is bounded in messages (1024), which alone would let one sender of 1 MiB messages park a
/// gigabyte there while the channel paces a slow reader; every sender first reserves its
/// message's size here and waits (stops reading its socket) while the budget is spent.
#[derive(Debug)]
pub struct Inbox(Arc<Semaphore>);

/// A reservation in a channel's inbox, released when the channel has routed the message.
#[derive(Debug)]
pub struct Reserved {
    _permit: OwnedSemaphorePermit,
}

impl Inbox {
    /// The budget per channel. A message larger than this reserves all of it.
    pub const BYTES: usize = 16 << 20;

    fn units(len: usize) -> u32 {
        // BYTES fits a u32, so the clamp makes the cast exact.
        len.clamp(1, Self::BYTES) as u32
    }

    /// Reserves room for `len` bytes now, if there is room.
    pub fn try_reserve(&self, len: usize) -> Option<Reserved> {
        let units = Self::units(len);
        let permit = Arc::clone(&self.0).try_acquire_many_owned(units).ok()?;
        Some(Reserved { _permit: permit })
    }

    /// Waits for room for `len` bytes (`None` only if the inbox were closed, which it never is).
    pub fn reserve(&self, len: usize) -> impl std::future::Future<Output = Option<Reserved>> {
        let (inbox, units) = (Arc::clone(&self.0), Self::units(len));
        async move {
            let permit = inbox.acquire_many_owned(units).await.ok()?;
            Some(Reserved { _permit: permit })
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub from: ClientId,
    pub data: Data,
    /// Held until the channel has routed the message (see `Inbox`).
    pub reserved: Reserved,
}

/// Sent to the registry when the inactivity timeout passed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChannelIdle {
    pub id: String,
}

/// Close every client with `cause` and stop (delete, reset, shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseChannel(pub CloseCause);

/// What both roles need: the channel's identity and settings, the way to other nodes, the
/// live numbers, the counters, and the bookkeeping of the message being routed.
pub struct Shared {
    id: String,
    spec: ChannelSpec,
    peers: Arc<dyn Peers>,
    stats: Arc<ChannelStats>,
    counters: PatternCounters,
    round: Round,
    /// `WRS_HISTORY_BYTES` and the node's `WRS_HISTORY_TOTAL_BYTES` budget, for the owner's
    /// history.
    history_limits: Limits,
}

/// What routing one message needs across its recipients: one clock reading, one counter add,
/// and what to wait for before the next message.
struct Round {
    now: Instant,
    delivered: u64,
    /// A recipient whose queue is busy (half full, writer draining): wait for it before the
    /// next message, so a burst is paced by the socket instead of overflowing the queue.
    busy: Option<Arc<Outbox>>,
    /// Records for other nodes waiting for room on a full link: awaited before the next
    /// message, the same way.
    waiting: Vec<SendFuture>,
}

impl Shared {
    fn touch_now(&self) {
        self.stats.touch(Instant::now());
    }

    fn set_count(&self, n: usize) {
        self.stats.clients.store(n as u64, Ordering::Relaxed);
    }

    /// Pushes one frame into a local client's outbox. `false` means the client must be
    /// removed: it was a slow consumer (now closed with 4008) or is already gone.
    fn push(&mut self, id: &ClientId, outbox: &Arc<Outbox>, frame: &Bytes) -> bool {
        match outbox.push_at(frame.clone(), self.round.now) {
            Ok(backlog) => {
                self.round.delivered += 1;
                if backlog == Backlog::Busy && self.round.busy.is_none() {
                    self.round.busy = Some(Arc::clone(outbox));
                }
                true
            }
            Err(err) => {
                if err == PushError::Full {
                    log::info!("channel {}: client {id} is a slow consumer", self.id);
                    outbox.close(CloseCause::SlowConsumer);
                    metrics::SLOW_CONSUMERS.inc();
                }
                self.counters.dropped.inc();
                false
            }
        }
    }

    /// Adds the local deliveries of the message just routed to the counter, once.
    fn count_delivered(&mut self) {
        if self.round.delivered > 0 {
            self.counters.messages_out.inc_by(self.round.delivered);
            self.round.delivered = 0;
        }
    }
}

enum Role {
    Owner(Owner),
    Proxy(Proxy),
}

pub struct Channel {
    shared: Shared,
    role: Role,
    /// Counts owner changes, so a re-admission answered after the owner moved again is ignored.
    generation: u64,
    /// The members that are up: an owner admits clients of these nodes only, so a node that
    /// is down or gone (say, removed while shutting down) cannot take a seat back.
    up: Arc<BTreeSet<u64>>,
    /// Messages held while ownership moves (see `holds`), in arrival order. Each keeps its
    /// inbox reservation, so holding is bounded in bytes and slows the senders down.
    held: VecDeque<Publish>,
    idle: Recipient<ChannelIdle>,
    closed: bool,
}

/// Timers longer than this are re-armed in steps, so huge timeouts never overflow an `Instant`.
const MAX_TIMER_STEP: Duration = Duration::from_secs(86_400);
/// How often an idle channel repeats its delete request until the delete commits.
const IDLE_RECHECK: Duration = Duration::from_millis(500);
/// Bounds one flow-control wait; a writer that does not drain in time soon counts as stalled.
pub const MAX_PACING_WAIT: Duration = Duration::from_millis(20);
/// Tries of a new client's join while the owner answers "unavailable" (it may be taking over
/// the channel right now), and of a re-admission after the owner moved.
const NEW_CLIENT_TRIES: u32 = 8;
const READMIT_TRIES: u32 = 40;
/// Pause between two tries.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How long a node that has just become a channel's owner holds its messages before routing
/// them, so the other nodes' clients (re-admitted as each node applies the change, within a
/// heartbeat or two) are there to receive them.
const TAKEOVER_GRACE: Duration = Duration::from_millis(500);

impl Channel {
    /// `owner`: the node that sequences the channel (`None` for this node), and the members
    /// that are up; `history_limits`: the byte bounds of the owner's history.
    pub fn new(
        id: String,
        spec: ChannelSpec,
        stats: Arc<ChannelStats>,
        idle: Recipient<ChannelIdle>,
        (owner, up): (Option<u64>, Arc<BTreeSet<u64>>),
        (peers, history_limits): (Arc<dyn Peers>, Limits),
    ) -> Channel {
        let shared = Shared {
            id,
            counters: PatternCounters::new(spec.pattern.as_str()),
            spec,
            peers,
            stats,
            round: Round {
                now: Instant::now(),
                delivered: 0,
                busy: None,
                waiting: Vec::new(),
            },
            history_limits,
        };
        let role = match owner {
            None => Role::Owner(Owner::new(&shared)),
            Some(node) => Role::Proxy(Proxy::new(node, HashMap::new())),
        };
        shared
            .stats
            .set_echo_here(owner.is_none() && shared.spec.pattern == Pattern::Echo);
        Channel {
            shared,
            role,
            generation: 0,
            up,
            held: VecDeque::new(),
            idle,
            closed: false,
        }
    }

    fn owner(&self) -> Option<u64> {
        match &self.role {
            Role::Owner(_) => None,
            Role::Proxy(p) => Some(p.owner),
        }
    }

    fn arm_timer(&self, ctx: &mut Context<Self>) {
        let timeout = self.shared.spec.timeout;
        if timeout < 0 {
            return;
        }
        let left = self.shared.stats.countdown(timeout) as u64;
        let step = Duration::from_millis(left).min(MAX_TIMER_STEP);
        ctx.run_later(step, move |act, ctx| {
            if act.shared.stats.countdown(timeout) == 0 {
                // The registry turns this into one replicated delete; the commit closes us
                // with 4001. Until then keep checking (e.g. while the cluster has no leader).
                act.idle.do_send(ChannelIdle {
                    id: act.shared.id.clone(),
                });
                ctx.run_later(IDLE_RECHECK, |act, ctx| act.arm_timer(ctx));
            } else {
                act.arm_timer(ctx);
            }
        });
    }

    /// After a message that left a queue busy, stop taking messages until that queue's writer
    /// drains once (at most `MAX_PACING_WAIT`). Senders meanwhile find the mailbox full and
    /// stop reading their sockets: TCP backpressure instead of a dropped fast reader.
    ///
    /// Records waiting for room on a full peer link are awaited the same way, without a
    /// bound of their own: the relay bounds each wait by `WRS_NODE_DOWN_AFTER`.
    fn pace(&mut self, ctx: &mut Context<Self>) {
        if let Some(outbox) = self.shared.round.busy.take() {
            ctx.wait(
                async move {
                    let _ = tokio::time::timeout(MAX_PACING_WAIT, outbox.drain()).await;
                }
                .into_actor(self),
            );
        }
        if !self.shared.round.waiting.is_empty() {
            let waiting = std::mem::take(&mut self.shared.round.waiting);
            let dropped = self.shared.counters.dropped.clone();
            ctx.wait(
                async move {
                    for wait in waiting {
                        if !wait.await {
                            dropped.inc();
                        }
                    }
                }
                .into_actor(self),
            );
        }
    }

    /// Re-admits every local client at the owner (it moved, or it forgot them while this node
    /// counted as down). A client that cannot be re-admitted is closed; it reconnects.
    fn readmit_locals(&mut self, ctx: &mut Context<Self>) {
        let Role::Proxy(proxy) = &self.role else {
            return;
        };
        let (owner, generation) = (proxy.owner, self.generation);
        let ids = proxy.ids();
        let since: Vec<u64> = ids.iter().map(|id| proxy.connected_at_ms(id)).collect();
        if let Role::Proxy(proxy) = &mut self.role {
            proxy.hold_until_admitted(&ids);
        }
        for (id, connected_at_ms) in ids.into_iter().zip(since) {
            // A re-admission replays nothing: the client has seen the live stream all along.
            let admission = Admission {
                client: id.clone(),
                connected_at_ms,
                history: 0,
            };
            let join = admit(
                Arc::clone(&self.shared.peers),
                owner,
                self.shared.id.clone(),
                admission,
                READMIT_TRIES,
            );
            ctx.spawn(join.into_actor(self).map(move |res, act, ctx| {
                if act.generation != generation {
                    return; // the owner moved again; that move re-admits it
                }
                let Role::Proxy(proxy) = &mut act.role else {
                    return;
                };
                match res {
                    Ok(()) => proxy.admitted(&id),
                    Err(e) => {
                        log::info!(
                            "channel {}: client {id} lost its seat: {e:?}",
                            act.shared.id
                        );
                        proxy.lost_seat(&act.shared, &id);
                    }
                }
                // Its messages held meanwhile go now, in order.
                act.flush_held(ctx);
            }));
        }
    }

    /// Whether a message from `from` must wait: this node has just become the owner (the
    /// others' clients are still being re-admitted), or `from` is being re-admitted at a new
    /// owner (sent now, the message would reach an owner that does not know its sender yet).
    fn holds(&self, from: &ClientId) -> bool {
        match &self.role {
            Role::Owner(owner) => owner.settling,
            Role::Proxy(proxy) => proxy.is_pending(from),
        }
    }

    /// Routes one message (owner) or forwards it (proxy).
    fn route(&mut self, msg: Publish) {
        let now = Instant::now();
        self.shared.round.now = now;
        match &mut self.role {
            Role::Owner(owner) => {
                if !owner.has(&msg.from) {
                    // Already removed (slow consumer, closing), or a client of a node this
                    // owner forgot (down, or its seat moved): the message is lost, and counted.
                    self.shared.counters.dropped.inc();
                    return;
                }
                self.shared.stats.touch(now);
                owner.publish(&mut self.shared, msg);
            }
            Role::Proxy(proxy) => {
                if !proxy.has(&msg.from) {
                    // A client this node does not know: one that left, or one of a node that
                    // still takes this node for the owner. Forwarding it to the new owner
                    // could overtake its sender's later messages, which go there directly;
                    // a message is lost (and counted) rather than delivered out of order.
                    self.shared.counters.dropped.inc();
                    return;
                }
                self.shared.stats.touch(now);
                proxy.publish(&mut self.shared, msg);
            }
        }
    }

    /// Routes the held messages that may go now, in order; the others keep waiting.
    fn flush_held(&mut self, ctx: &mut Context<Self>) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        for msg in held {
            if self.holds(&msg.from) {
                self.held.push_back(msg);
            } else {
                self.route(msg);
            }
        }
        self.pace(ctx);
    }

    /// Closes this node's clients (other nodes close theirs from the same Raft commit).
    fn close_all(&mut self, cause: CloseCause, ctx: &mut Context<Self>) {
        self.closed = true;
        match &mut self.role {
            Role::Owner(owner) => owner.close_all(cause),
            Role::Proxy(proxy) => proxy.close_all(&self.shared, cause),
        }
        self.shared.set_count(0);
        ctx.stop();
    }
}

/// Asks `owner` to admit `client`, trying again while it answers "unavailable" or "no such
/// channel" — a node that has just become the owner may not have applied the change, or the
/// channel, yet (a deleted channel closes this proxy, and with it these tries). A proxy that
/// gives up tells the owner to forget the client, in case one of the tries did admit it (no
/// ghost seat).
async fn admit(
    peers: Arc<dyn Peers>,
    owner: u64,
    channel: String,
    admission: Admission,
    tries: u32,
) -> Result<(), JoinRefused> {
    let mut tries_left = tries.max(1);
    loop {
        tries_left -= 1;
        match Arc::clone(&peers)
            .join(owner, channel.clone(), admission.clone())
            .await
        {
            Err(JoinRefused::Unavailable | JoinRefused::Closed) if tries_left > 0 => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(JoinRefused::Unavailable) => {
                hand_over(peers.leave(owner, &channel, admission.client));
                return Err(JoinRefused::Unavailable);
            }
            other => return other,
        }
    }
}

impl Actor for Channel {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Senders block (instead of queueing without bound) once this many messages wait.
        ctx.set_mailbox_capacity(1024);
        self.arm_timer(ctx);
    }
}

impl Handler<Join> for Channel {
    type Result = ResponseActFuture<Self, Result<(), JoinRefused>>;

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Box::pin(fut::ready(Err(JoinRefused::Closed)));
        }
        let proxy = match &mut self.role {
            Role::Owner(owner) => {
                let at = At::Local(msg.outbox);
                let res = owner.admit(&mut self.shared, msg.id, at, msg.history);
                self.pace(ctx);
                return Box::pin(fut::ready(res));
            }
            Role::Proxy(proxy) => proxy,
        };
        let admission = Admission {
            client: msg.id.clone(),
            connected_at_ms: msg.outbox.connected_at_ms(),
            history: msg.history,
        };
        proxy.add(&self.shared, msg.id.clone(), msg.outbox);
        proxy.joining(&msg.id);
        let (id, generation) = (msg.id, self.generation);
        let join = admit(
            Arc::clone(&self.shared.peers),
            proxy.owner,
            self.shared.id.clone(),
            admission,
            NEW_CLIENT_TRIES,
        );
        Box::pin(join.into_actor(self).map(move |res, act, _| {
            // Admitted by an owner that is no longer the owner: the client holds no seat at the
            // new one (and was left out of the role change), so it is refused and reconnects.
            let res = if act.generation == generation {
                res
            } else {
                res.and(Err(JoinRefused::Unavailable))
            };
            if res.is_ok() {
                if let Role::Proxy(proxy) = &mut act.role {
                    proxy.joined(&id);
                }
            } else {
                // Refused: the client never connects, so no leave will come for it — wherever
                // it sits now (ownership may have moved meanwhile), it goes.
                match &mut act.role {
                    Role::Proxy(proxy) => proxy.forget(&act.shared, &id),
                    Role::Owner(owner) => owner.leave(&act.shared, &id),
                }
            }
            res
        }))
    }
}

impl Handler<JoinRemote> for Channel {
    type Result = Result<(), JoinRefused>;

    fn handle(&mut self, msg: JoinRemote, ctx: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Err(JoinRefused::Closed);
        }
        // Before this node applied the first member list it knows nobody: it admits anyone.
        if !self.up.is_empty() && !self.up.contains(&msg.node) {
            return Err(JoinRefused::Unavailable);
        }
        let at = At::Remote {
            node: msg.node,
            connected_at_ms: if msg.connected_at_ms == 0 {
                crate::model::now_ms()
            } else {
                msg.connected_at_ms
            },
        };
        let res = match &mut self.role {
            Role::Owner(owner) => owner.admit(&mut self.shared, msg.id, at, msg.history),
            // Ownership moved while the request was on its way; the proxy retries.
            Role::Proxy(_) => Err(JoinRefused::Unavailable),
        };
        self.pace(ctx);
        res
    }
}

impl Handler<Leave> for Channel {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        match &mut self.role {
            Role::Owner(owner) => owner.leave(&self.shared, &msg.id),
            Role::Proxy(proxy) => proxy.leave(&self.shared, &msg.id),
        }
    }
}

impl Handler<Publish> for Channel {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        if self.holds(&msg.from) {
            self.held.push_back(msg);
            return;
        }
        self.route(msg);
        self.pace(ctx);
    }
}

impl Handler<DeliverLocal> for Channel {
    type Result = ();

    fn handle(&mut self, msg: DeliverLocal, ctx: &mut Context<Self>) {
        let Role::Proxy(proxy) = &mut self.role else {
            // This node owns the channel: a late delivery from a former owner.
            self.shared.counters.dropped.inc();
            return;
        };
        self.shared.round.now = Instant::now();
        proxy.deliver_local(&mut self.shared, msg);
        self.pace(ctx);
    }
}

impl Handler<Topology> for Channel {
    type Result = ();

    fn handle(&mut self, msg: Topology, ctx: &mut Context<Self>) {
        if self.closed {
            return;
        }
        self.up = Arc::clone(&msg.up);
        if msg.owner == self.owner() {
            match &mut self.role {
                // Still the owner: forget the clients of nodes that are down or gone.
                Role::Owner(owner) => owner.forget_nodes(&self.shared, &msg.up),
                // The owner forgot this node's clients while it counted as down.
                Role::Proxy(_) if msg.readmit => self.readmit_locals(ctx),
                Role::Proxy(_) => {}
            }
            return;
        }
        log::info!(
            "channel {}: sequenced by {}",
            self.shared.id,
            msg.owner
                .map_or("this node".to_string(), |n| format!("node {n}"))
        );
        self.generation += 1;
        // From the first move on, every message goes through the actor again, for good: an
        // echo answered by its session could overtake one the actor holds, or one still in
        // its mailbox (which the session cannot tell apart).
        self.shared.stats.set_echo_here(false);
        // Only this node's clients stay; the others re-join from their own nodes, and round
        // robin starts over.
        let placeholder = Role::Proxy(Proxy::new(0, HashMap::new()));
        let locals = match std::mem::replace(&mut self.role, placeholder) {
            Role::Owner(owner) => owner.into_locals(),
            Role::Proxy(proxy) => proxy.into_locals(),
        };
        self.shared.set_count(locals.len());
        match msg.owner {
            None => {
                let mut owner = Owner::with_locals(&self.shared, locals);
                owner.settling = true;
                self.role = Role::Owner(owner);
                let generation = self.generation;
                ctx.run_later(TAKEOVER_GRACE, move |act, ctx| {
                    if act.generation != generation {
                        return;
                    }
                    if let Role::Owner(owner) = &mut act.role {
                        owner.settling = false;
                    }
                    act.flush_held(ctx);
                });
            }
            Some(node) => {
                self.role = Role::Proxy(Proxy::new(node, locals));
                self.readmit_locals(ctx);
                // What an earlier role held: messages of other nodes' clients go to the new
                // owner; this node's clients' wait for their re-admission.
                self.flush_held(ctx);
            }
        }
    }
}

impl Handler<CloseChannel> for Channel {
    type Result = ();

    fn handle(&mut self, msg: CloseChannel, ctx: &mut Context<Self>) {
        self.close_all(msg.0, ctx);
    }
}

impl Handler<PublishHttp> for Channel {
    type Result = ResponseActFuture<Self, Result<u64, ChannelRefused>>;

    fn handle(&mut self, msg: PublishHttp, ctx: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Box::pin(fut::ready(Err(ChannelRefused::Closed)));
        }
        if !matches!(
            self.shared.spec.pattern,
            Pattern::PubSub | Pattern::PushPull
        ) {
            return Box::pin(fut::ready(Err(ChannelRefused::PatternUnsupported)));
        }
        let now = Instant::now();
        self.shared.round.now = now;
        // Activity on this node too, so its own countdown view follows.
        self.shared.stats.touch(now);
        let owner = match &mut self.role {
            Role::Owner(owner) if owner.settling => {
                // Just took the channel over: the other nodes' clients are being re-admitted.
                // Ask again once they had their moment, as held client messages wait.
                let addr = ctx.address();
                return Box::pin(
                    async move {
                        tokio::time::sleep(RETRY_PAUSE).await;
                        addr.send(msg).await.unwrap_or(Err(ChannelRefused::Closed))
                    }
                    .into_actor(self),
                );
            }
            Role::Owner(owner) => {
                let delivered = owner.publish_http(&mut self.shared, msg.data);
                self.pace(ctx);
                return Box::pin(fut::ready(Ok(delivered)));
            }
            Role::Proxy(_) if msg.forwarded => {
                return Box::pin(fut::ready(Err(ChannelRefused::Unavailable)))
            }
            Role::Proxy(proxy) => proxy.owner,
        };
        let ask: AskFuture<u64> =
            Arc::clone(&self.shared.peers).publish_http(owner, self.shared.id.clone(), msg.data);
        Box::pin(ask.into_actor(self))
    }
}

impl Handler<ListClients> for Channel {
    type Result = ResponseActFuture<Self, Result<Vec<Present>, ChannelRefused>>;

    fn handle(&mut self, msg: ListClients, _: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Box::pin(fut::ready(Err(ChannelRefused::Closed)));
        }
        let owner = match &self.role {
            Role::Owner(owner) => {
                let me = self.shared.peers.node_id();
                return Box::pin(fut::ready(Ok(owner.present(me))));
            }
            Role::Proxy(_) if msg.forwarded => {
                return Box::pin(fut::ready(Err(ChannelRefused::Unavailable)))
            }
            Role::Proxy(proxy) => proxy.owner,
        };
        let ask = Arc::clone(&self.shared.peers).clients(owner, self.shared.id.clone());
        Box::pin(ask.into_actor(self))
    }
}
