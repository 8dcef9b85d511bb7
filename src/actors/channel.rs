//! The channel actor: owns one channel's clients (their outboxes and join order), applies the
//! pattern to every message, and runs the inactivity timer. All of a channel's traffic is
//! sequenced by one actor in the cluster — on the channel's owner node; on other nodes the
//! actor is a proxy that forwards its clients to the owner (through `Peers`).
//!
//! When the members change (`Topology`), an owner forgets the clients of nodes that are no
//! longer up (no ghosts), and a proxy whose owner moved re-admits its clients at the new one.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::OpCode;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::outbox::{encode, Backlog, Outbox, PushError};
use super::pattern::{route, ClientQueue, Kind, Targets};
use super::peers::{Peers, SendFuture, Sent};
use super::subprotocol::{self, Envelope, EnvelopeError};
use crate::error::CloseCause;
use crate::metrics::{self, PatternCounters};
use crate::model::{ChannelSpec, ClientId, Data, JoinRefused};

/// Live numbers the REST API reads without asking the actor (lists stay cheap), and the
/// channel's inbox budget that senders draw on.
#[derive(Debug)]
pub struct ChannelStats {
    pub clients: AtomicU64,
    /// Milliseconds after `born` of the last activity.
    last_activity: AtomicU64,
    born: Instant,
    pub inbox: Inbox,
}

impl ChannelStats {
    pub fn new() -> ChannelStats {
        ChannelStats {
            clients: AtomicU64::new(0),
            last_activity: AtomicU64::new(0),
            born: Instant::now(),
            inbox: Inbox(Arc::new(Semaphore::new(Inbox::BYTES))),
        }
    }

    fn touch(&self, now: Instant) {
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
}

/// A client of another node joins this (owner) channel.
#[derive(Message)]
#[rtype(result = "Result<(), JoinRefused>")]
pub struct JoinRemote {
    pub id: ClientId,
    pub node: u64,
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

/// The members changed: the channel's owner (`None` = this node), the members that are up,
/// and whether the owner forgot this node's clients (it was down, or rejoined under a new id)
/// so that they must be admitted again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Topology {
    pub owner: Option<u64>,
    pub up: Arc<BTreeSet<u64>>,
    pub readmit: bool,
}

/// Where a client's frames go.
#[derive(Clone)]
enum Sink {
    Local(Arc<Outbox>),
    Remote(u64),
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

pub struct Channel {
    id: String,
    spec: ChannelSpec,
    queue: ClientQueue<ClientId>,
    /// On the owner: every client of the channel; on a proxy: this node's clients only.
    clients: HashMap<ClientId, Sink>,
    /// `None` when this node sequences the channel, else the owner's node id.
    owner: Option<u64>,
    /// Counts owner changes, so a re-admission answered after the owner moved again is ignored.
    generation: u64,
    peers: Arc<dyn Peers>,
    /// Remote recipients of the message being routed, grouped by node.
    remote_batch: HashMap<u64, Vec<ClientId>>,
    /// Bookkeeping of the message being routed.
    round: Round,
    stats: Arc<ChannelStats>,
    idle: Recipient<ChannelIdle>,
    counters: PatternCounters,
    closed: bool,
}

/// What routing one message needs across its recipients: one clock reading, one counter add,
/// and the first queue it left busy.
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

impl Round {
    /// Pushes one frame into a local client's outbox. `false` means the client must be
    /// removed: it was a slow consumer (now closed with 4008) or is already gone.
    fn push(
        &mut self,
        channel: &str,
        id: &ClientId,
        outbox: &Arc<Outbox>,
        frame: &Bytes,
        dropped: &prometheus::IntCounter,
    ) -> bool {
        match outbox.push_at(frame.clone(), self.now) {
            Ok(backlog) => {
                self.delivered += 1;
                if backlog == Backlog::Busy && self.busy.is_none() {
                    self.busy = Some(Arc::clone(outbox));
                }
                true
            }
            Err(err) => {
                if err == PushError::Full {
                    log::info!("channel {channel}: client {id} is a slow consumer");
                    outbox.close(CloseCause::SlowConsumer);
                    metrics::SLOW_CONSUMERS.inc();
                }
                dropped.inc();
                false
            }
        }
    }
}

/// Timers longer than this are re-armed in steps, so huge timeouts never overflow an `Instant`.
const MAX_TIMER_STEP: Duration = Duration::from_secs(86_400);
/// How often an idle channel repeats its delete request until the delete commits.
const IDLE_RECHECK: Duration = Duration::from_millis(500);

impl Channel {
    pub fn new(
        id: String,
        spec: ChannelSpec,
        stats: Arc<ChannelStats>,
        idle: Recipient<ChannelIdle>,
        owner: Option<u64>,
        peers: Arc<dyn Peers>,
    ) -> Channel {
        Channel {
            id,
            queue: ClientQueue::default(),
            clients: HashMap::new(),
            owner,
            generation: 0,
            peers,
            remote_batch: HashMap::new(),
            round: Round {
                now: Instant::now(),
                delivered: 0,
                busy: None,
                waiting: Vec::new(),
            },
            counters: PatternCounters::new(spec.pattern.as_str()),
            spec,
            stats,
            idle,
            closed: false,
        }
    }

    fn arm_timer(&self, ctx: &mut Context<Self>) {
        if self.spec.timeout < 0 {
            return;
        }
        let left = self.stats.countdown(self.spec.timeout) as u64;
        let step = Duration::from_millis(left).min(MAX_TIMER_STEP);
        ctx.run_later(step, |act, ctx| {
            if act.stats.countdown(act.spec.timeout) == 0 {
                // The registry turns this into one replicated delete; the commit closes us
                // with 4001. Until then keep checking (e.g. while the cluster has no leader).
                act.idle.do_send(ChannelIdle { id: act.id.clone() });
                ctx.run_later(IDLE_RECHECK, |act, ctx| act.arm_timer(ctx));
            } else {
                act.arm_timer(ctx);
            }
        });
    }

    fn local_count(&self) -> usize {
        self.clients
            .values()
            .filter(|s| matches!(s, Sink::Local(_)))
            .count()
    }

    fn update_count(&self) {
        self.stats
            .clients
            .store(self.clients.len() as u64, Ordering::Relaxed);
    }

    /// Closes this node's clients (other nodes close theirs from the same Raft commit).
    fn close_all(&mut self, cause: CloseCause, ctx: &mut Context<Self>) {
        self.closed = true;
        metrics::CLIENTS.sub(self.local_count() as i64);
        for (id, sink) in &self.clients {
            if let Sink::Local(outbox) = sink {
                outbox.close(cause);
                // A shutdown frees this node's seats at the owner at once (a delete closes
                // the owner's channel anyway).
                if let Some(owner) = self.owner {
                    hand_over(self.peers.leave(owner, &self.id, id.clone()));
                }
            }
        }
        self.clients.clear();
        self.queue = ClientQueue::default();
        self.stats.clients.store(0, Ordering::Relaxed);
        ctx.stop();
    }

    fn add(&mut self, id: ClientId, sink: Sink) {
        self.stats.touch(Instant::now());
        if self.owner.is_none() {
            self.queue.join(id.clone());
        }
        if matches!(sink, Sink::Local(_)) {
            metrics::CLIENTS.inc();
        }
        if let Some(Sink::Local(_)) = self.clients.insert(id, sink) {
            metrics::CLIENTS.dec();
        }
        self.update_count();
    }

    fn remove(&mut self, id: &ClientId) {
        if let Some(sink) = self.clients.remove(id) {
            self.queue.leave(id);
            self.update_count();
            if let Sink::Local(_) = sink {
                metrics::CLIENTS.dec();
                if let Some(owner) = self.owner {
                    hand_over(self.peers.leave(owner, &self.id, id.clone()));
                }
            }
        }
    }

    /// Pushes one encoded frame to one client: into its outbox if it is local (a full queue
    /// disconnects it as a slow consumer), else into the batch for its node.
    fn deliver(&mut self, to: &ClientId, frame: &Bytes) {
        let outbox = match self.clients.get(to) {
            None => return,
            Some(Sink::Remote(node)) => {
                self.remote_batch.entry(*node).or_default().push(to.clone());
                return;
            }
            Some(Sink::Local(outbox)) => Arc::clone(outbox),
        };
        if !self
            .round
            .push(&self.id, to, &outbox, frame, &self.counters.dropped)
        {
            self.remove(to);
        }
    }

    /// Adds the local deliveries of the message just routed to the counter, once.
    fn count_delivered(&mut self) {
        if self.round.delivered > 0 {
            self.counters.messages_out.inc_by(self.round.delivered);
            self.round.delivered = 0;
        }
    }

    /// Sends the frame once to each node that has recipients of it, and counts deliveries.
    fn flush_remote(&mut self, frame: &Bytes) {
        self.count_delivered();
        for (node, to) in self.remote_batch.drain() {
            self.counters.messages_out.inc_by(to.len() as u64);
            match self.peers.deliver(node, &self.id, to, frame.clone()) {
                Sent::Queued => {}
                Sent::Lost => self.counters.dropped.inc(),
                Sent::Later(wait) => self.round.waiting.push(wait),
            }
        }
    }

    fn deliver_to(&mut self, targets: Targets<ClientId>, from: &ClientId, frame: Bytes) {
        match targets {
            Targets::Nobody => {}
            Targets::One(to) => self.deliver(&to, &frame),
            Targets::Others | Targets::Everyone => {
                let skip_sender = matches!(targets, Targets::Others);
                // Walk the clients directly (no per-recipient lookup or id copies); remove
                // the ones that turned out slow or gone afterwards.
                let mut gone: Vec<ClientId> = Vec::new();
                let Channel {
                    id: channel,
                    clients,
                    remote_batch,
                    round,
                    counters,
                    ..
                } = self;
                for (id, sink) in clients.iter() {
                    if skip_sender && (Arc::ptr_eq(id, from) || id == from) {
                        continue;
                    }
                    match sink {
                        Sink::Remote(node) => {
                            remote_batch.entry(*node).or_default().push(id.clone())
                        }
                        Sink::Local(outbox) => {
                            if !round.push(channel, id, outbox, &frame, &counters.dropped) {
                                gone.push(id.clone());
                            }
                        }
                    }
                }
                for id in &gone {
                    self.remove(id);
                }
            }
            Targets::UnknownOrigin => return self.reply_error(from, EnvelopeError::UnknownOrigin),
        }
        self.flush_remote(&frame);
    }

    fn reply_error(&mut self, to: &ClientId, err: EnvelopeError) {
        let frame = encode(OpCode::Text, err.frame().as_bytes());
        self.deliver(to, &frame);
        self.flush_remote(&frame);
    }

    /// After a message that left a queue busy, stop taking messages until that queue's writer
    /// drains once (at most `MAX_PACING_WAIT`). Senders meanwhile find the mailbox full and
    /// stop reading their sockets: TCP backpressure instead of a dropped fast reader.
    ///
    /// Records waiting for room on a full peer link are awaited the same way, without a
    /// bound of their own: the link's stall timeout (`WRS_NODE_DOWN_AFTER`) ends the wait.
    fn pace(&mut self, ctx: &mut Context<Self>) {
        if let Some(outbox) = self.round.busy.take() {
            ctx.wait(
                async move {
                    let _ = tokio::time::timeout(MAX_PACING_WAIT, outbox.drain()).await;
                }
                .into_actor(self),
            );
        }
        if !self.round.waiting.is_empty() {
            let waiting = std::mem::take(&mut self.round.waiting);
            let dropped = self.counters.dropped.clone();
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

    /// Routes one message (this node is the owner).
    fn publish(&mut self, msg: Publish) {
        self.counters.messages_in.inc();
        let (pattern, include_sender) = (self.spec.pattern, self.spec.include_sender);
        let from = msg.from;
        if !pattern.uses_envelope() {
            let frame = match &msg.data {
                Data::Text(t) => encode(OpCode::Text, t.as_bytes()),
                Data::Binary(b) => encode(OpCode::Binary, b),
            };
            let targets = route(pattern, include_sender, &mut self.queue, &from, Kind::Plain);
            self.deliver_to(targets, &from, frame);
            return;
        }
        let Data::Text(text) = msg.data else {
            self.reply_error(&from, EnvelopeError::BinaryUnsupported);
            return;
        };
        match subprotocol::parse(&text, &from) {
            Ok(Envelope::Request(stamped)) => {
                let frame = encode(OpCode::Text, stamped.as_bytes());
                let targets = route(pattern, false, &mut self.queue, &from, Kind::Request);
                self.deliver_to(targets, &from, frame);
            }
            Ok(Envelope::Reply { origin }) => {
                let origin: ClientId = origin.into();
                let frame = encode(OpCode::Text, text.as_bytes());
                let targets = route(pattern, false, &mut self.queue, &from, Kind::Reply(origin));
                self.deliver_to(targets, &from, frame);
            }
            Err(err) => self.reply_error(&from, err),
        }
    }

    /// Asks the owner to admit a local client; the client is registered first, so frames the
    /// owner sends right after admitting it are not missed.
    fn join_at_owner(
        &mut self,
        owner: u64,
        id: ClientId,
        outbox: Arc<Outbox>,
    ) -> ResponseActFuture<Self, Result<(), JoinRefused>> {
        self.add(id.clone(), Sink::Local(outbox));
        let join = admit(
            Arc::clone(&self.peers),
            owner,
            self.id.clone(),
            id.clone(),
            NEW_CLIENT_TRIES,
        );
        Box::pin(join.into_actor(self).map(move |res, act, _| {
            if res.is_err() {
                if let Some(Sink::Local(_)) = act.clients.remove(&id) {
                    metrics::CLIENTS.dec();
                }
                act.update_count();
            }
            res
        }))
    }

    /// Re-admits every local client at the owner `owner` (it moved, or dropped them while this
    /// node counted as down). A client that cannot be re-admitted is closed; it reconnects.
    fn readmit_locals(&mut self, owner: u64, ctx: &mut Context<Self>) {
        let generation = self.generation;
        let locals: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, s)| matches!(s, Sink::Local(_)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in locals {
            let join = admit(
                Arc::clone(&self.peers),
                owner,
                self.id.clone(),
                id.clone(),
                READMIT_TRIES,
            );
            ctx.spawn(
                async move { join.await.map_err(|e| (id, e)) }
                    .into_actor(self)
                    .map(move |res, act, _| {
                        let Err((id, e)) = res else { return };
                        if act.generation != generation {
                            return; // the owner moved again; that move re-admits it
                        }
                        log::info!("channel {}: client {id} lost its seat: {e:?}", act.id);
                        if let Some(Sink::Local(outbox)) = act.clients.get(&id) {
                            outbox.close(CloseCause::Internal);
                        }
                        act.remove(&id);
                    }),
            );
        }
    }
}

/// Tries of a new client's join while the owner answers "unavailable" (it may be taking over
/// the channel right now), and of a re-admission after the owner moved.
const NEW_CLIENT_TRIES: u32 = 8;
const READMIT_TRIES: u32 = 40;
/// Pause between two tries.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Asks `owner` to admit `client`, trying again while it answers "unavailable" or "no such
/// channel" — a node that has just become the owner may not have applied the change, or the
/// channel, yet (a deleted channel closes this proxy, and with it these tries). A proxy that
/// gives up tells the owner to forget the client, in case one of the tries did admit it (no
/// ghost seat).
async fn admit(
    peers: Arc<dyn Peers>,
    owner: u64,
    channel: String,
    client: ClientId,
    tries: u32,
) -> Result<(), JoinRefused> {
    let mut tries_left = tries.max(1);
    loop {
        tries_left -= 1;
        match Arc::clone(&peers)
            .join(owner, channel.clone(), client.clone())
            .await
        {
            Err(JoinRefused::Unavailable | JoinRefused::Closed) if tries_left > 0 => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(JoinRefused::Unavailable) => {
                hand_over(peers.leave(owner, &channel, client));
                return Err(JoinRefused::Unavailable);
            }
            other => return other,
        }
    }
}

/// Lets a record for another node go its way without the caller waiting: one that waits for
/// room on a full link finishes on its own (leaves are tiny and must not be lost).
fn hand_over(sent: Sent) {
    if let Sent::Later(wait) = sent {
        actix_rt::spawn(async move {
            let _ = wait.await;
        });
    }
}

/// Bounds one flow-control wait; a writer that does not drain in time soon counts as stalled.
const MAX_PACING_WAIT: Duration = Duration::from_millis(20);

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

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Box::pin(fut::ready(Err(JoinRefused::Closed)));
        }
        if let Some(owner) = self.owner {
            return self.join_at_owner(owner, msg.id, msg.outbox);
        }
        let limit = self.spec.client_limit;
        if limit >= 0 && self.clients.len() as i64 >= limit {
            return Box::pin(fut::ready(Err(JoinRefused::LimitReached(limit))));
        }
        self.add(msg.id, Sink::Local(msg.outbox));
        Box::pin(fut::ready(Ok(())))
    }
}

impl Handler<JoinRemote> for Channel {
    type Result = Result<(), JoinRefused>;

    fn handle(&mut self, msg: JoinRemote, _: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Err(JoinRefused::Closed);
        }
        if self.owner.is_some() {
            // Ownership moved while the request was on its way; the proxy retries.
            return Err(JoinRefused::Unavailable);
        }
        let limit = self.spec.client_limit;
        if limit >= 0 && self.clients.len() as i64 >= limit {
            return Err(JoinRefused::LimitReached(limit));
        }
        self.add(msg.id, Sink::Remote(msg.node));
        Ok(())
    }
}

impl Handler<Leave> for Channel {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        self.remove(&msg.id);
    }
}

impl Handler<Publish> for Channel {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        if !self.clients.contains_key(&msg.from) {
            // Already removed (slow consumer, closing), or a client of a node this owner
            // forgot (down, or its seat moved): the message is lost, and counted.
            self.counters.dropped.inc();
            return;
        }
        self.round.now = Instant::now();
        self.stats.touch(self.round.now);
        match self.owner {
            Some(owner) => {
                // A proxy: the owner sequences. Its clients' activity reaches the owner's timer.
                match self.peers.publish(owner, &self.id, msg.from, msg.data) {
                    Sent::Queued => {}
                    Sent::Lost => self.counters.dropped.inc(),
                    Sent::Later(wait) => {
                        // The link to the owner is full: take no further message until this
                        // one is queued, so the senders' sockets are read slower.
                        self.round.waiting.push(wait);
                        self.pace(ctx);
                    }
                }
            }
            None => {
                self.publish(msg);
                self.pace(ctx);
            }
        }
    }
}

impl Handler<DeliverLocal> for Channel {
    type Result = ();

    fn handle(&mut self, msg: DeliverLocal, ctx: &mut Context<Self>) {
        if self.owner != Some(msg.from) {
            // A node that no longer owns the channel (it was down, and is catching up with
            // the log) must not deliver behind the new owner's back: its messages would
            // arrive out of order. Lost instead, and counted.
            self.counters.dropped.inc();
            return;
        }
        self.round.now = Instant::now();
        for to in &msg.to {
            if let Some(Sink::Local(_)) = self.clients.get(to) {
                self.deliver(to, &msg.frame);
            }
        }
        self.remote_batch.clear();
        self.count_delivered();
        self.pace(ctx);
    }
}

impl Handler<Topology> for Channel {
    type Result = ();

    fn handle(&mut self, msg: Topology, ctx: &mut Context<Self>) {
        if self.closed {
            return;
        }
        if msg.owner == self.owner {
            if self.owner.is_none() {
                // Still the owner: forget the clients of nodes that are down or gone.
                let before = self.clients.len();
                let gone: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|(_, s)| matches!(s, Sink::Remote(n) if !msg.up.contains(n)))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &gone {
                    self.remove(id);
                }
                if !gone.is_empty() {
                    log::info!(
                        "channel {}: forgot {} clients of nodes that are down or gone ({} left)",
                        self.id,
                        gone.len(),
                        before - gone.len()
                    );
                }
            } else if let (Some(owner), true) = (self.owner, msg.readmit) {
                // The owner dropped this node's clients while it counted as down.
                self.readmit_locals(owner, ctx);
            }
            return;
        }
        log::info!(
            "channel {}: sequenced by {}",
            self.id,
            msg.owner
                .map_or("this node".to_string(), |n| format!("node {n}"))
        );
        self.owner = msg.owner;
        self.generation += 1;
        // Remote clients re-join from their own nodes; round robin starts over.
        self.clients.retain(|_, s| matches!(s, Sink::Local(_)));
        self.queue = ClientQueue::default();
        match self.owner {
            None => {
                let locals: Vec<ClientId> = self.clients.keys().cloned().collect();
                for id in locals {
                    self.queue.join(id);
                }
                self.update_count();
            }
            Some(owner) => {
                self.update_count();
                self.readmit_locals(owner, ctx);
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
