//! The owner role: the one place in the cluster that sequences a channel. It holds every
//! client of the channel — local ones by their outbox, those of other nodes by their node — in
//! join order, applies the pattern to each message, pushes frames into local outboxes and sends
//! one `Deliver` per other node that has recipients. It also keeps the channel's history
//! (`History`) and replays it to a client at the moment it admits it, so replay and live
//! stream are sequenced by the same actor: no gap, no duplicate.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use actix_http::ws::OpCode;
use bytes::Bytes;

use super::{Publish, Shared};
use crate::actors::history::History;
use crate::actors::outbox::{encode, Outbox};
use crate::actors::pattern::{route, ClientQueue, Kind, Targets};
use crate::actors::peers::Sent;
use crate::actors::subprotocol::{self, Envelope, EnvelopeError};
use crate::error::CloseCause;
use crate::metrics;
use crate::model::{ClientId, Data, JoinRefused, Pattern, Present};

/// Where a client's frames go.
enum Sink {
    Local(Arc<Outbox>),
    /// A client of another node, and when it connected there (ms since the Unix epoch).
    Remote(u64, u64),
}

/// Where a client to be admitted is: on this node (its outbox) or on another node.
pub enum At {
    Local(Arc<Outbox>),
    Remote { node: u64, connected_at_ms: u64 },
}

#[derive(Default)]
pub struct Owner {
    /// Just took the channel over: messages are held until the other nodes' clients had a
    /// moment to be re-admitted (`TAKEOVER_GRACE`).
    pub settling: bool,
    queue: ClientQueue<ClientId>,
    clients: HashMap<ClientId, Sink>,
    /// Remote recipients of the message being routed, grouped by node.
    remote_batch: HashMap<u64, Vec<ClientId>>,
    /// The channel's last messages (pub-sub with `history`); empty whenever this node has
    /// just become the owner: history lives in the owner's memory only.
    history: History,
}

impl Owner {
    /// An owner with no clients yet and an empty history of the channel's size.
    pub fn new(shared: &Shared) -> Owner {
        Owner {
            history: History::new(shared.spec.history as usize, &shared.history_limits),
            ..Owner::default()
        }
    }

    /// Takes over a channel whose local clients a proxy held; the queue starts over with them.
    pub fn with_locals(shared: &Shared, locals: HashMap<ClientId, Arc<Outbox>>) -> Owner {
        let mut owner = Owner::new(shared);
        for (id, outbox) in locals {
            owner.queue.join(id.clone());
            owner.clients.insert(id, Sink::Local(outbox));
        }
        owner
    }

    fn local_count(&self) -> usize {
        self.clients
            .values()
            .filter(|s| matches!(s, Sink::Local(_)))
            .count()
    }

    /// Admits a client of this node or of another node, within the client limit, and
    /// replays the newest `history` stored messages to it, oldest first, before any message
    /// routed after this (a client admitted again, e.g. on a retry, gets no second replay).
    pub fn admit(
        &mut self,
        shared: &mut Shared,
        id: ClientId,
        at: At,
        history: usize,
    ) -> Result<(), JoinRefused> {
        let limit = shared.spec.client_limit;
        let known = self.clients.contains_key(&id);
        if limit >= 0 && self.clients.len() as i64 >= limit && !known {
            return Err(JoinRefused::LimitReached(limit));
        }
        shared.touch_now();
        self.queue.join(id.clone());
        let sink = match at {
            At::Local(outbox) => {
                metrics::CLIENTS.inc();
                Sink::Local(outbox)
            }
            At::Remote {
                node,
                connected_at_ms,
            } => Sink::Remote(node, connected_at_ms),
        };
        if let Some(Sink::Local(_)) = self.clients.insert(id.clone(), sink) {
            metrics::CLIENTS.dec();
        }
        shared.set_count(self.clients.len());
        if !known && history > 0 {
            self.replay(shared, &id, history);
        }
        Ok(())
    }

    /// Pushes the newest `k` stored messages to one client, oldest first: into its outbox, or
    /// as `Deliver` records on the link to its node — the same link its live frames take
    /// after these, in this order.
    fn replay(&mut self, shared: &mut Shared, id: &ClientId, k: usize) {
        if self.history.is_empty() {
            return;
        }
        shared.round.now = std::time::Instant::now();
        let frames: Vec<Bytes> = self.history.last(k).cloned().collect();
        match self.clients.get(id) {
            Some(Sink::Local(outbox)) => {
                let outbox = Arc::clone(outbox);
                for frame in &frames {
                    if !shared.push(id, &outbox, frame) {
                        self.leave(shared, id);
                        break;
                    }
                }
                shared.count_delivered();
            }
            Some(Sink::Remote(node, _)) => {
                let node = *node;
                for frame in frames {
                    shared.counters.messages_out.inc();
                    match shared
                        .peers
                        .deliver(node, &shared.id, vec![id.clone()], frame)
                    {
                        Sent::Queued => {}
                        Sent::Lost => shared.counters.dropped.inc(),
                        Sent::Later(wait) => shared.round.waiting.push(wait),
                    }
                }
            }
            None => {}
        }
    }

    /// Every client of the channel across the cluster (presence), in join order; `me` names
    /// this node for its own clients.
    pub fn present(&self, me: u64) -> Vec<Present> {
        self.queue
            .iter()
            .filter_map(|id| {
                let (node, connected_at) = match self.clients.get(id)? {
                    Sink::Local(outbox) => (me, outbox.connected_at_ms()),
                    Sink::Remote(node, since) => (*node, *since),
                };
                Some(Present {
                    id: id.to_string(),
                    connected_at,
                    node,
                })
            })
            .collect()
    }

    pub fn leave(&mut self, shared: &Shared, id: &ClientId) {
        if let Some(sink) = self.clients.remove(id) {
            self.queue.leave(id);
            shared.set_count(self.clients.len());
            if let Sink::Local(_) = sink {
                metrics::CLIENTS.dec();
            }
        }
    }

    /// Whether `id` is a client of this channel (messages from others are not routed).
    pub fn has(&self, id: &ClientId) -> bool {
        self.clients.contains_key(id)
    }

    /// Forgets the clients of nodes that are no longer up (down, left, removed): no ghosts.
    pub fn forget_nodes(&mut self, shared: &Shared, up: &BTreeSet<u64>) {
        let gone: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, s)| matches!(s, Sink::Remote(n, _) if !up.contains(n)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.leave(shared, id);
        }
        if !gone.is_empty() {
            log::info!(
                "channel {}: forgot {} clients of nodes that are down or gone ({} left)",
                shared.id,
                gone.len(),
                self.clients.len()
            );
        }
    }

    /// Hands the local clients over (this node stops owning the channel); the other nodes'
    /// clients re-join at the new owner from their own nodes.
    pub fn into_locals(self) -> HashMap<ClientId, Arc<Outbox>> {
        self.clients
            .into_iter()
            .filter_map(|(id, s)| match s {
                Sink::Local(outbox) => Some((id, outbox)),
                Sink::Remote(..) => None,
            })
            .collect()
    }

    /// Closes this node's clients with `cause` (other nodes close theirs from the same commit).
    pub fn close_all(&mut self, cause: CloseCause) {
        metrics::CLIENTS.sub(self.local_count() as i64);
        for sink in self.clients.values() {
            if let Sink::Local(outbox) = sink {
                outbox.close(cause);
            }
        }
        self.clients.clear();
        self.queue = ClientQueue::default();
    }

    /// Pushes one encoded frame to one client: into its outbox if it is local (a full queue
    /// disconnects it as a slow consumer), else into the batch for its node.
    fn deliver(&mut self, shared: &mut Shared, to: &ClientId, frame: &Bytes) {
        let outbox = match self.clients.get(to) {
            None => return,
            Some(Sink::Remote(node, _)) => {
                self.remote_batch.entry(*node).or_default().push(to.clone());
                return;
            }
            Some(Sink::Local(outbox)) => Arc::clone(outbox),
        };
        if !shared.push(to, &outbox, frame) {
            self.leave(shared, to);
        }
    }

    /// Sends the frame once to each node that has recipients of it, and counts deliveries.
    fn flush_remote(&mut self, shared: &mut Shared, frame: &Bytes) {
        shared.count_delivered();
        for (node, to) in self.remote_batch.drain() {
            shared.counters.messages_out.inc_by(to.len() as u64);
            match shared.peers.deliver(node, &shared.id, to, frame.clone()) {
                Sent::Queued => {}
                Sent::Lost => shared.counters.dropped.inc(),
                Sent::Later(wait) => shared.round.waiting.push(wait),
            }
        }
    }

    fn deliver_to(
        &mut self,
        shared: &mut Shared,
        targets: Targets<ClientId>,
        from: &ClientId,
        frame: Bytes,
    ) {
        match targets {
            Targets::Nobody => {}
            Targets::One(to) => self.deliver(shared, &to, &frame),
            Targets::Others | Targets::Everyone => {
                let skip_sender = matches!(targets, Targets::Others);
                // Walk the clients directly (no per-recipient lookup or id copies); remove
                // the ones that turned out slow or gone afterwards.
                let mut gone: Vec<ClientId> = Vec::new();
                for (id, sink) in self.clients.iter() {
                    if skip_sender && (Arc::ptr_eq(id, from) || id == from) {
                        continue;
                    }
                    match sink {
                        Sink::Remote(node, _) => {
                            self.remote_batch.entry(*node).or_default().push(id.clone())
                        }
                        Sink::Local(outbox) => {
                            if !shared.push(id, outbox, &frame) {
                                gone.push(id.clone());
                            }
                        }
                    }
                }
                for id in &gone {
                    self.leave(shared, id);
                }
            }
            Targets::UnknownOrigin => {
                return self.reply_error(shared, from, EnvelopeError::UnknownOrigin)
            }
        }
        self.flush_remote(shared, &frame);
    }

    fn reply_error(&mut self, shared: &mut Shared, to: &ClientId, err: EnvelopeError) {
        let frame = encode(OpCode::Text, err.frame().as_bytes());
        self.deliver(shared, to, &frame);
        self.flush_remote(shared, &frame);
    }

    /// Routes one message of a client of this channel.
    pub fn publish(&mut self, shared: &mut Shared, msg: Publish) {
        shared.counters.messages_in.inc();
        let (pattern, include_sender) = (shared.spec.pattern, shared.spec.include_sender);
        let from = msg.from;
        if !pattern.uses_envelope() {
            let frame = match &msg.data {
                Data::Text(t) => encode(OpCode::Text, t.as_bytes()),
                Data::Binary(b) => encode(OpCode::Binary, b),
            };
            let targets = route(pattern, include_sender, &mut self.queue, &from, Kind::Plain);
            if self.history.is_enabled() {
                self.history.push(frame.clone(), msg.data.len());
            }
            self.deliver_to(shared, targets, &from, frame);
            return;
        }
        let Data::Text(text) = msg.data else {
            self.reply_error(shared, &from, EnvelopeError::BinaryUnsupported);
            return;
        };
        match subprotocol::parse(&text, &from) {
            Ok(Envelope::Request(stamped)) => {
                let frame = encode(OpCode::Text, stamped.as_bytes());
                let targets = route(pattern, false, &mut self.queue, &from, Kind::Request);
                self.deliver_to(shared, targets, &from, frame);
            }
            Ok(Envelope::Reply { origin }) => {
                let origin: ClientId = origin.into();
                let frame = encode(OpCode::Text, text.as_bytes());
                let targets = route(pattern, false, &mut self.queue, &from, Kind::Reply(origin));
                self.deliver_to(shared, targets, &from, frame);
            }
            Err(err) => self.reply_error(shared, &from, err),
        }
    }

    /// Routes a server-side message (`POST /channels/{id}/messages`), from no client:
    /// pub-sub to every client, push-pull to the next one in round robin. Answers how many
    /// clients it was handed to (the caller checked the pattern).
    pub fn publish_http(&mut self, shared: &mut Shared, data: Data) -> u64 {
        shared.counters.messages_in.inc();
        let frame = match &data {
            Data::Text(t) => encode(OpCode::Text, t.as_bytes()),
            Data::Binary(b) => encode(OpCode::Binary, b),
        };
        // No client has the empty id: every client is an "other", and round robin skips none.
        let nobody: ClientId = Arc::from("");
        if self.history.is_enabled() {
            self.history.push(frame.clone(), data.len());
        }
        match shared.spec.pattern {
            Pattern::PubSub => {
                if self.clients.is_empty() {
                    return 0;
                }
                self.deliver_to(shared, Targets::Everyone, &nobody, frame);
                // Only the clients that failed (slow consumers) are gone meanwhile.
                self.clients.len() as u64
            }
            Pattern::PushPull => match self.queue.next_other(&nobody) {
                Some(to) => {
                    self.deliver_to(shared, Targets::One(to.clone()), &nobody, frame);
                    u64::from(self.clients.contains_key(&to))
                }
                None => 0,
            },
            _ => 0,
        }
    }
}
