//! The session actor: one WebSocket client. Decodes frames from the request body (size limits,
//! UTF-8, continuation, ping/pong, close), forwards messages to its channel, and keeps the
//! connection alive with pings. Outbound frames bypass it: the channel writes into the outbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame, Item, OpCode, ProtocolError};
use actix_web::error::PayloadError;
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use super::channel::{Channel, ChannelStats, Leave, Publish, Reserved, MAX_PACING_WAIT};
use super::outbox::{encode, Backlog, Outbox, PushError};
use crate::error::CloseCause;
use crate::metrics::{self, PatternCounters};
use crate::model::{ClientId, Data};

/// Per-connection limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max_message_size: usize,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

pub struct Session {
    id: ClientId,
    channel: Addr<Channel>,
    /// The channel's shared numbers and inbox budget (every message reserves its size there).
    stats: Arc<ChannelStats>,
    outbox: Arc<Outbox>,
    limits: SessionLimits,
    codec: Codec,
    /// Bytes read but not yet decoded into a whole frame.
    buf: BytesMut,
    /// A fragmented message being reassembled: (is text, data so far).
    partial: Option<(bool, BytesMut)>,
    last_seen: Instant,
    /// Waiting for room in the channel's mailbox; decoding resumes afterwards, in order.
    blocked: bool,
    done: bool,
    /// The echo pattern's counters, once this session answered a message itself.
    echo_counters: Option<PatternCounters>,
}

impl Session {
    pub fn new(
        id: ClientId,
        channel: Addr<Channel>,
        stats: Arc<ChannelStats>,
        outbox: Arc<Outbox>,
        limits: SessionLimits,
    ) -> Session {
        Session {
            id,
            channel,
            stats,
            outbox,
            limits,
            codec: Codec::new().max_size(limits.max_message_size),
            buf: BytesMut::new(),
            partial: None,
            last_seen: Instant::now(),
            blocked: false,
            done: false,
            echo_counters: None,
        }
    }

    /// Closes the connection for `cause` and stops reading.
    fn fail(&mut self, cause: CloseCause, ctx: &mut Context<Self>) {
        log::debug!("client {}: closing: {}", self.id, cause.reason());
        self.outbox.close(cause);
        self.done = true;
        ctx.stop();
    }

    /// Decodes and handles every whole frame in the buffer.
    fn process(&mut self, ctx: &mut Context<Self>) {
        while !self.done && !self.blocked {
            // The codec ignores the RSV bits; no extension is negotiated, so they must be 0.
            if self.buf.first().is_some_and(|b| b & 0x70 != 0) {
                return self.fail(CloseCause::ProtocolError, ctx);
            }
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => self.on_frame(frame, ctx),
                Ok(None) => return,
                Err(ProtocolError::Overflow) => return self.fail(CloseCause::MessageTooBig, ctx),
                Err(e) => {
                    log::debug!("client {}: protocol error: {e}", self.id);
                    return self.fail(CloseCause::ProtocolError, ctx);
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        match frame {
            Frame::Text(b) => self.message(true, b, ctx),
            Frame::Binary(b) => self.message(false, b, ctx),
            Frame::Continuation(item) => self.continuation(item, ctx),
            Frame::Ping(b) => {
                // A client that pings but never reads only fills its own bounded outbox.
                let _ = self.outbox.push(encode(OpCode::Pong, &b));
            }
            Frame::Pong(_) => {}
            Frame::Close(reason) => {
                let code = reason.map_or(1000, |r| u16::from(r.code));
                self.outbox.close_with(code, "");
                self.done = true;
                ctx.stop();
            }
        }
    }

    fn continuation(&mut self, item: Item, ctx: &mut Context<Self>) {
        let (text, chunk, last) = match item {
            Item::FirstText(b) => (Some(true), b, false),
            Item::FirstBinary(b) => (Some(false), b, false),
            Item::Continue(b) => (None, b, false),
            Item::Last(b) => (None, b, true),
        };
        if let Some(text) = text {
            self.partial = Some((text, BytesMut::from(&chunk[..])));
        } else if let Some((_, data)) = self.partial.as_mut() {
            data.extend_from_slice(&chunk);
        } else {
            return self.fail(CloseCause::ProtocolError, ctx);
        }
        let size = self.partial.as_ref().map_or(0, |(_, d)| d.len());
        if size > self.limits.max_message_size {
            return self.fail(CloseCause::MessageTooBig, ctx);
        }
        if last {
            if let Some((text, data)) = self.partial.take() {
                self.message(text, data.freeze(), ctx);
            }
        }
    }

    fn message(&mut self, text: bool, payload: Bytes, ctx: &mut Context<Self>) {
        let data = if text {
            match ByteString::try_from(payload) {
                Ok(s) => Data::Text(s),
                Err(_) => return self.fail(CloseCause::InvalidUtf8, ctx),
            }
        } else {
            Data::Binary(payload)
        };
        if self.stats.echoes_here() {
            return self.echo(data, ctx);
        }
        let len = data.len();
        match self.stats.inbox.try_reserve(len) {
            Some(reserved) => self.forward(data, reserved, ctx),
            None => {
                // The channel holds its budget of unrouted bytes: stop reading this socket
                // until some of it is routed.
                self.blocked = true;
                let reserve = self.stats.inbox.reserve(len).into_actor(self);
                ctx.wait(reserve.map(move |reserved, act, ctx| {
                    act.blocked = false;
                    match reserved {
                        Some(reserved) => {
                            act.forward(data, reserved, ctx);
                            if !act.blocked {
                                act.process(ctx);
                            }
                        }
                        None => act.fail(CloseCause::Internal, ctx),
                    }
                }));
            }
        }
    }

    /// Hands one message, its inbox room reserved, to the channel actor.
    /// An echo channel's message when this node sequences it: its only recipient is its
    /// sender, so it goes straight into this client's own outbox, without the hop to the
    /// channel actor (another thread) and back. The actor's one other job for it, the
    /// inactivity clock, is an atomic in `ChannelStats`. A full outbox makes this client a
    /// slow consumer, as a delivery by the actor would; a busy one pauses reading until it
    /// drains, as the actor's pacing would.
    fn echo(&mut self, data: Data, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.stats.touch(now);
        let counters = self
            .echo_counters
            .get_or_insert_with(|| PatternCounters::new("echo"));
        counters.messages_in.inc();
        let frame = match &data {
            Data::Text(t) => encode(OpCode::Text, t.as_bytes()),
            Data::Binary(b) => encode(OpCode::Binary, b),
        };
        match self.outbox.push_at(frame, now) {
            Ok(backlog) => {
                counters.messages_out.inc();
                if backlog == Backlog::Busy {
                    self.blocked = true;
                    let outbox = Arc::clone(&self.outbox);
                    let drained = async move {
                        let _ = tokio::time::timeout(MAX_PACING_WAIT, outbox.drain()).await;
                    }
                    .into_actor(self);
                    ctx.wait(drained.map(|(), act, ctx| {
                        act.blocked = false;
                        act.process(ctx);
                    }));
                }
            }
            Err(err) => {
                counters.dropped.inc();
                if err == PushError::Full {
                    log::info!("client {}: a slow consumer of its own echoes", self.id);
                    metrics::SLOW_CONSUMERS.inc();
                    self.fail(CloseCause::SlowConsumer, ctx);
                } else {
                    self.done = true;
                    ctx.stop();
                }
            }
        }
    }

    fn forward(&mut self, data: Data, reserved: Reserved, ctx: &mut Context<Self>) {
        let msg = Publish {
            from: self.id.clone(),
            data,
            reserved,
        };
        match self.channel.try_send(msg) {
            Ok(()) => {}
            Err(SendError::Full(msg)) => {
                // Backpressure: stop reading this socket until the channel has room.
                self.blocked = true;
                let send = self.channel.send(msg).into_actor(self);
                ctx.wait(send.map(|res, act, ctx| {
                    act.blocked = false;
                    if res.is_err() {
                        act.fail(CloseCause::Internal, ctx);
                    } else {
                        act.process(ctx);
                    }
                }));
            }
            // The channel actor is gone; if it closed us already, that close frame wins.
            Err(SendError::Closed(_)) => self.fail(CloseCause::Internal, ctx),
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.limits.ping_interval, |act, ctx| {
            if act.outbox.is_closed() {
                // The channel closed us (deleted, timed out, slow consumer).
                act.done = true;
                ctx.stop();
            } else if act.last_seen.elapsed() >= act.limits.ping_timeout {
                act.fail(CloseCause::PingTimeout, ctx);
            } else {
                let _ = act.outbox.push(encode(OpCode::Ping, b""));
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.channel.do_send(Leave {
            id: self.id.clone(),
        });
        // The socket went away without a close frame: end the response body too.
        self.outbox.close_with(1000, "");
    }
}

impl StreamHandler<Result<Bytes, PayloadError>> for Session {
    fn handle(&mut self, chunk: Result<Bytes, PayloadError>, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        if self.outbox.is_closed() {
            // The channel closed us (slow consumer, deleted): read nothing more from this
            // client, so what it goes on sending costs nothing.
            self.done = true;
            return ctx.stop();
        }
        match chunk {
            Ok(bytes) => {
                self.last_seen = Instant::now();
                if self.buf.is_empty() {
                    self.buf = BytesMut::from(bytes);
                } else {
                    self.buf.extend_from_slice(&bytes);
                }
                self.process(ctx);
                if self.buf.is_empty() {
                    // Idle connections keep no read buffer (decoded payloads own their bytes).
                    self.buf = BytesMut::new();
                }
            }
            Err(e) => {
                log::debug!("client {}: read error: {e}", self.id);
                self.done = true;
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
