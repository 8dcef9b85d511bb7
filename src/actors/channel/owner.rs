//! The owner role: the one place in the cluster that sequences a channel. It holds every
//! client of the channel — local ones by their outbox, those of other nodes by their node — in
//! join order, applies the pattern to each message, pushes frames into local outboxes and sends
//! one `Deliver` per other node that has recipients.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use actix_http::ws::OpCode;
use bytes::Bytes;

use super::{Publish, Shared};
use crate::actors::outbox::{encode, Outbox};
use crate::actors::pattern::{route, ClientQueue, Kind, Targets};
use crate::actors::peers::Sent;
use crate::actors::subprotocol::{self, Envelope, EnvelopeError};
use crate::error::CloseCause;
use crate::metrics;
use crate::model::{ClientId, Data, JoinRefused};

/// Where a client's frames go.
enum Sink {
    Local(Arc<Outbox>),
    Remote(u64),
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
}

impl Owner {
    /// Takes over a channel whose local clients a proxy held; the queue starts over with them.
    pub fn with_locals(locals: HashMap<ClientId, Arc<Outbox>>) -> Owner {
        let mut owner = Owner::default();
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

    /// Admits a client of this node (`outbox`) or of node `node`, within the client limit.
    pub fn admit(
        &mut self,
        shared: &Shared,
        id: ClientId,
        at: Result<Arc<Outbox>, u64>,
    ) -> Result<(), JoinRefused> {
        let limit = shared.spec.client_limit;
        if limit >= 0 && self.clients.len() as i64 >= limit && !self.clients.contains_key(&id) {
            return Err(JoinRefused::LimitReached(limit));
        }
        shared.touch_now();
        self.queue.join(id.clone());
        let sink = match at {
            Ok(outbox) => {
                metrics::CLIENTS.inc();
                Sink::Local(outbox)
            }
            Err(node) => Sink::Remote(node),
        };
        if let Some(Sink::Local(_)) = self.clients.insert(id, sink) {
            metrics::CLIENTS.dec();
        }
        shared.set_count(self.clients.len());
        Ok(())
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
            .filter(|(_, s)| matches!(s, Sink::Remote(n) if !up.contains(n)))
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
                Sink::Remote(_) => None,
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
            Some(Sink::Remote(node)) => {
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
                        Sink::Remote(node) => {
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
}
