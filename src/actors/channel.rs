//! The channel actor: owns one channel's clients (their outboxes and join order), applies the
//! pattern to every message, and runs the inactivity timer. All of a channel's traffic is
//! sequenced here, which is what makes round robin fair and replies find their origin.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::OpCode;
use bytes::Bytes;
use bytestring::ByteString;

use super::outbox::{encode, Backlog, Outbox, PushError};
use super::pattern::{route, ClientQueue, Kind, Pattern, Targets};
use super::registry::{ChannelIdle, Registry};
use super::subprotocol::{self, Envelope, EnvelopeError};
use crate::error::CloseCause;
use crate::metrics::{self, PatternCounters};

/// A client id: a UUID string, cheap to clone.
pub type ClientId = Arc<str>;

/// A channel's configuration, fixed at creation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChannelSpec {
    pub pattern: Pattern,
    /// `-1` = no limit.
    pub client_limit: i64,
    /// Milliseconds; `-1` = never.
    pub timeout: i64,
    pub include_sender: bool,
}

/// Live numbers the REST API reads without asking the actor (lists stay cheap).
#[derive(Debug)]
pub struct ChannelStats {
    pub clients: AtomicU64,
    /// Milliseconds after `born` of the last activity.
    last_activity: AtomicU64,
    born: Instant,
}

impl ChannelStats {
    pub fn new() -> ChannelStats {
        ChannelStats {
            clients: AtomicU64::new(0),
            last_activity: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    fn touch(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
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

/// One message's payload; text stays text, binary stays binary.
#[derive(Debug, Clone)]
pub enum Data {
    Text(ByteString),
    Binary(Bytes),
}

#[derive(Message)]
#[rtype(result = "Result<(), JoinRefused>")]
pub struct Join {
    pub id: ClientId,
    pub outbox: Arc<Outbox>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefused {
    LimitReached(i64),
    Closed,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub id: ClientId,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub from: ClientId,
    pub data: Data,
}

/// Close every client with `cause` and stop (delete, reset, shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseChannel(pub CloseCause);

pub struct Channel {
    id: String,
    spec: ChannelSpec,
    queue: ClientQueue<ClientId>,
    outboxes: HashMap<ClientId, Arc<Outbox>>,
    stats: Arc<ChannelStats>,
    registry: Addr<Registry>,
    counters: PatternCounters,
    /// A recipient whose queue is busy (half full, writer draining): wait for it before the
    /// next message, so a burst is paced by the socket instead of overflowing the queue.
    busy: Option<Arc<Outbox>>,
    closed: bool,
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
        registry: Addr<Registry>,
    ) -> Channel {
        Channel {
            id,
            queue: ClientQueue::default(),
            outboxes: HashMap::new(),
            counters: PatternCounters::new(spec.pattern.as_str()),
            spec,
            stats,
            registry,
            busy: None,
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
                act.registry.do_send(ChannelIdle { id: act.id.clone() });
                ctx.run_later(IDLE_RECHECK, |act, ctx| act.arm_timer(ctx));
            } else {
                act.arm_timer(ctx);
            }
        });
    }

    fn close_all(&mut self, cause: CloseCause, ctx: &mut Context<Self>) {
        self.closed = true;
        metrics::CLIENTS.sub(self.outboxes.len() as i64);
        for outbox in self.outboxes.values() {
            outbox.close(cause);
        }
        self.outboxes.clear();
        self.queue = ClientQueue::default();
        self.stats.clients.store(0, Ordering::Relaxed);
        ctx.stop();
    }

    fn remove(&mut self, id: &ClientId) {
        if self.outboxes.remove(id).is_some() {
            metrics::CLIENTS.dec();
            self.queue.leave(id);
            self.stats
                .clients
                .store(self.outboxes.len() as u64, Ordering::Relaxed);
        }
    }

    /// Pushes one encoded frame to one client; a full queue disconnects it as a slow consumer.
    fn deliver(&mut self, to: &ClientId, frame: &Bytes) {
        let Some(outbox) = self.outboxes.get(to) else {
            return;
        };
        match outbox.push(frame.clone()) {
            Ok(backlog) => {
                self.counters.messages_out.inc();
                if backlog == Backlog::Busy && self.busy.is_none() {
                    self.busy = Some(Arc::clone(outbox));
                }
            }
            Err(PushError::Full) => {
                log::info!("channel {}: client {} is a slow consumer", self.id, to);
                outbox.close(CloseCause::SlowConsumer);
                metrics::SLOW_CONSUMERS.inc();
                self.counters.dropped.inc();
                self.remove(&to.clone());
            }
            Err(PushError::Closed) => {
                self.counters.dropped.inc();
                self.remove(&to.clone());
            }
        }
    }

    fn deliver_to(&mut self, targets: Targets<ClientId>, from: &ClientId, frame: Bytes) {
        match targets {
            Targets::Nobody => {}
            Targets::One(to) => self.deliver(&to, &frame),
            Targets::Others | Targets::Everyone => {
                let skip_sender = matches!(targets, Targets::Others);
                // Collect first: a slow consumer is removed while we iterate.
                let ids: Vec<ClientId> = self
                    .queue
                    .iter()
                    .filter(|c| !(skip_sender && *c == from))
                    .cloned()
                    .collect();
                for to in &ids {
                    self.deliver(to, &frame);
                }
            }
            Targets::UnknownOrigin => self.reply_error(from, EnvelopeError::UnknownOrigin),
        }
    }

    fn reply_error(&mut self, to: &ClientId, err: EnvelopeError) {
        let frame = encode(OpCode::Text, err.frame().as_bytes());
        self.deliver(to, &frame);
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
    type Result = Result<(), JoinRefused>;

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Err(JoinRefused::Closed);
        }
        let limit = self.spec.client_limit;
        if limit >= 0 && self.outboxes.len() as i64 >= limit {
            return Err(JoinRefused::LimitReached(limit));
        }
        self.stats.touch();
        self.queue.join(msg.id.clone());
        if self.outboxes.insert(msg.id, msg.outbox).is_none() {
            metrics::CLIENTS.inc();
        }
        self.stats
            .clients
            .store(self.outboxes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl Handler<Leave> for Channel {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        self.remove(&msg.id);
    }
}

impl Channel {
    /// After a message that left a queue busy, stop taking messages until that queue's writer
    /// drains once (at most `MAX_PACING_WAIT`). Senders meanwhile find the mailbox full and
    /// stop reading their sockets: TCP backpressure instead of a dropped fast reader.
    fn pace(&mut self, ctx: &mut Context<Self>) {
        if let Some(outbox) = self.busy.take() {
            ctx.wait(
                async move {
                    let _ = tokio::time::timeout(MAX_PACING_WAIT, outbox.drain()).await;
                }
                .into_actor(self),
            );
        }
    }
}

/// Bounds one flow-control wait; a writer that does not drain in time soon counts as stalled.
const MAX_PACING_WAIT: Duration = Duration::from_millis(20);

impl Handler<Publish> for Channel {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        self.publish(msg);
        self.pace(ctx);
    }
}

impl Channel {
    fn publish(&mut self, msg: Publish) {
        if !self.outboxes.contains_key(&msg.from) {
            return; // already removed (slow consumer, closing)
        }
        self.stats.touch();
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
}

impl Handler<CloseChannel> for Channel {
    type Result = ();

    fn handle(&mut self, msg: CloseChannel, ctx: &mut Context<Self>) {
        self.close_all(msg.0, ctx);
    }
}
