//! The proxy role: a channel whose owner is another node. It keeps only this node's clients
//! (their outboxes), has the owner admit them, forwards their messages and leaves to the owner,
//! and pushes the frames the owner routes to them into their outboxes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{DeliverLocal, Publish, Shared};
use crate::actors::outbox::Outbox;
use crate::actors::peers::Sent;
use crate::error::CloseCause;
use crate::metrics;
use crate::model::ClientId;

pub struct Proxy {
    /// The node that sequences the channel.
    pub owner: u64,
    clients: HashMap<ClientId, Arc<Outbox>>,
    /// Clients being re-admitted at the owner: their messages wait until it knows them.
    pending: HashSet<ClientId>,
    /// New clients whose first admission is still on its way: not connected yet, so a role
    /// change leaves them out (their join is refused and they reconnect).
    joining: HashSet<ClientId>,
}

impl Proxy {
    pub fn new(owner: u64, clients: HashMap<ClientId, Arc<Outbox>>) -> Proxy {
        Proxy {
            owner,
            clients,
            pending: HashSet::new(),
            joining: HashSet::new(),
        }
    }

    pub fn joining(&mut self, id: &ClientId) {
        self.joining.insert(id.clone());
    }

    pub fn joined(&mut self, id: &ClientId) {
        self.joining.remove(id);
    }

    /// These clients are being re-admitted: hold their messages until `admitted`.
    pub fn hold_until_admitted(&mut self, ids: &[ClientId]) {
        self.pending = ids.iter().cloned().collect();
    }

    pub fn admitted(&mut self, id: &ClientId) {
        self.pending.remove(id);
    }

    pub fn is_pending(&self, id: &ClientId) -> bool {
        // Asked for every message: skip hashing the id while nobody is pending (the usual case).
        !self.pending.is_empty() && self.pending.contains(id)
    }

    pub fn ids(&self) -> Vec<ClientId> {
        self.clients.keys().cloned().collect()
    }

    /// When a local client connected (ms since the Unix epoch; 0 if unknown).
    pub fn connected_at_ms(&self, id: &ClientId) -> u64 {
        self.clients.get(id).map_or(0, |o| o.connected_at_ms())
    }

    /// Registers a local client before the owner admits it, so frames the owner sends right
    /// after admitting it are not missed.
    pub fn add(&mut self, shared: &Shared, id: ClientId, outbox: Arc<Outbox>) {
        shared.touch_now();
        metrics::CLIENTS.inc();
        if self.clients.insert(id, outbox).is_some() {
            metrics::CLIENTS.dec();
        }
        shared.set_count(self.clients.len());
    }

    /// Forgets a client the owner did not admit (the owner never counted it).
    pub fn forget(&mut self, shared: &Shared, id: &ClientId) {
        self.pending.remove(id);
        self.joining.remove(id);
        if self.clients.remove(id).is_some() {
            metrics::CLIENTS.dec();
            shared.set_count(self.clients.len());
        }
    }

    /// A local client went away: the owner forgets it too.
    pub fn leave(&mut self, shared: &Shared, id: &ClientId) {
        if self.clients.contains_key(id) {
            self.forget(shared, id);
            hand_over(shared.peers.leave(self.owner, &shared.id, id.clone()));
        }
    }

    /// The owner could not take the client back: it is closed (and reconnects).
    pub fn lost_seat(&mut self, shared: &Shared, id: &ClientId) {
        if let Some(outbox) = self.clients.get(id) {
            outbox.close(CloseCause::Internal);
        }
        self.leave(shared, id);
    }

    pub fn has(&self, id: &ClientId) -> bool {
        self.clients.contains_key(id)
    }

    /// A local client's message: the owner sequences it. Its activity reaches the owner's
    /// timer there.
    pub fn publish(&mut self, shared: &mut Shared, msg: Publish) {
        match shared
            .peers
            .publish(self.owner, &shared.id, msg.from, msg.data)
        {
            Sent::Queued => {}
            Sent::Lost => shared.counters.dropped.inc(),
            // The link to the owner is full: the channel takes no further message until this
            // one is queued, so the senders' sockets are read slower.
            Sent::Later(wait) => shared.round.waiting.push(wait),
        }
    }

    /// Frames the owner routed to clients of this node.
    pub fn deliver_local(&mut self, shared: &mut Shared, msg: DeliverLocal) {
        if msg.from != self.owner {
            // A node that no longer owns the channel (it was down, and is catching up with
            // the log) must not deliver behind the new owner's back: its messages would
            // arrive out of order. Lost instead, and counted.
            shared.counters.dropped.inc();
            return;
        }
        let mut gone = Vec::new();
        for to in &msg.to {
            if let Some(outbox) = self.clients.get(to) {
                if !shared.push(to, outbox, &msg.frame) {
                    gone.push(to.clone());
                }
            }
        }
        for id in &gone {
            self.leave(shared, id);
        }
        shared.count_delivered();
    }

    /// Hands the connected local clients over (the owner changed); clients still joining
    /// stay behind.
    pub fn into_locals(mut self) -> HashMap<ClientId, Arc<Outbox>> {
        for id in &self.joining {
            if self.clients.remove(id).is_some() {
                metrics::CLIENTS.dec();
            }
        }
        self.clients
    }

    /// Closes this node's clients with `cause`, freeing their seats at the owner at once (a
    /// shutdown; after a delete the owner's channel is gone anyway).
    pub fn close_all(&mut self, shared: &Shared, cause: CloseCause) {
        metrics::CLIENTS.sub(self.clients.len() as i64);
        for (id, outbox) in self.clients.drain() {
            outbox.close(cause);
            hand_over(shared.peers.leave(self.owner, &shared.id, id));
        }
    }
}

/// Lets a record for another node go its way without the caller waiting: one that waits for
/// room on a full link finishes on its own (leaves are tiny and must not be lost).
pub fn hand_over(sent: Sent) {
    if let Sent::Later(wait) = sent {
        actix_rt::spawn(async move {
            let _ = wait.await;
        });
    }
}
