//! The registry actor: the map channel id → channel actor and its fixed facts (spec, token
//! hash, live stats). Creates channels (spread over a few arbiters), deletes, lists, resets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix::prelude::*;

use super::channel::{Channel, ChannelSpec, ChannelStats, CloseChannel};
use crate::error::CloseCause;
use crate::metrics;
use crate::token;

/// What the REST API knows about a channel without asking its actor.
#[derive(Debug)]
pub struct ChannelInfo {
    pub id: String,
    pub spec: ChannelSpec,
    pub token_hash: [u8; 32],
    pub created_at_ms: u64,
    pub stats: Arc<ChannelStats>,
}

#[derive(Clone)]
pub struct ChannelHandle {
    pub info: Arc<ChannelInfo>,
    pub addr: Addr<Channel>,
}

#[derive(Message)]
#[rtype(result = "Result<Created, CreateRefused>")]
pub struct Create(pub ChannelSpec);

/// A new channel and its token, which is never stored or shown again.
pub struct Created {
    pub info: Arc<ChannelInfo>,
    pub token: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CreateRefused {
    LimitReached(usize),
    ShuttingDown,
}

#[derive(Message)]
#[rtype(result = "Option<ChannelHandle>")]
pub struct Get(pub String);

#[derive(Message)]
#[rtype(result = "Vec<Arc<ChannelInfo>>")]
pub struct List;

#[derive(Message)]
#[rtype(result = "bool")]
pub struct Delete(pub String);

/// Deletes every channel; answers how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Reset;

/// Closes every channel's clients with `1001` and refuses new work.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Shutdown;

/// Sent by a channel whose inactivity timeout fired.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChannelExpired {
    pub id: String,
}

pub struct Registry {
    channels: HashMap<String, ChannelHandle>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    max_channels: usize,
    id_length: usize,
    token_length: usize,
    shutting_down: bool,
}

impl Registry {
    pub fn new(
        arbiters: Vec<ArbiterHandle>,
        max_channels: usize,
        id_length: usize,
        token_length: usize,
    ) -> Registry {
        Registry {
            channels: HashMap::new(),
            arbiters,
            next_arbiter: 0,
            max_channels,
            id_length,
            token_length,
            shutting_down: false,
        }
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

impl Handler<Create> for Registry {
    type Result = Result<Created, CreateRefused>;

    fn handle(&mut self, msg: Create, ctx: &mut Context<Self>) -> Self::Result {
        if self.shutting_down {
            return Err(CreateRefused::ShuttingDown);
        }
        if self.channels.len() >= self.max_channels {
            return Err(CreateRefused::LimitReached(self.max_channels));
        }
        let id = loop {
            let id = token::random_id(self.id_length);
            if !self.channels.contains_key(&id) {
                break id;
            }
        };
        let token = token::random_token(self.token_length);
        let created_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let info = Arc::new(ChannelInfo {
            id: id.clone(),
            spec: msg.0,
            token_hash: token::hash(&token),
            created_at_ms,
            stats: Arc::new(ChannelStats::new()),
        });
        let channel = {
            let (id, spec, stats, me) = (
                id.clone(),
                info.spec.clone(),
                Arc::clone(&info.stats),
                ctx.address(),
            );
            let make = move |_: &mut Context<Channel>| Channel::new(id, spec, stats, me);
            if self.arbiters.is_empty() {
                Channel::create(make)
            } else {
                self.next_arbiter = (self.next_arbiter + 1) % self.arbiters.len();
                Channel::start_in_arbiter(&self.arbiters[self.next_arbiter], make)
            }
        };
        log::info!(
            "channel {} created ({}, clientLimit {}, timeout {})",
            id,
            info.spec.pattern,
            info.spec.client_limit,
            info.spec.timeout
        );
        self.channels.insert(
            id,
            ChannelHandle {
                info: Arc::clone(&info),
                addr: channel,
            },
        );
        metrics::CHANNELS.set(self.channels.len() as i64);
        Ok(Created { info, token })
    }
}

impl Handler<Get> for Registry {
    type Result = Option<ChannelHandle>;

    fn handle(&mut self, msg: Get, _: &mut Context<Self>) -> Self::Result {
        self.channels.get(&msg.0).cloned()
    }
}

impl Handler<List> for Registry {
    type Result = Vec<Arc<ChannelInfo>>;

    fn handle(&mut self, _: List, _: &mut Context<Self>) -> Self::Result {
        let mut all: Vec<_> = self
            .channels
            .values()
            .map(|h| Arc::clone(&h.info))
            .collect();
        all.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        all
    }
}

impl Handler<Delete> for Registry {
    type Result = bool;

    fn handle(&mut self, msg: Delete, _: &mut Context<Self>) -> bool {
        match self.channels.remove(&msg.0) {
            Some(handle) => {
                handle
                    .addr
                    .do_send(CloseChannel(CloseCause::ChannelDeleted));
                log::info!("channel {} deleted", msg.0);
                true
            }
            None => false,
        }
    }
}

impl Handler<Reset> for Registry {
    type Result = usize;

    fn handle(&mut self, _: Reset, _: &mut Context<Self>) -> usize {
        let n = self.close_all(CloseCause::ChannelDeleted);
        log::info!("reset: {n} channels deleted");
        n
    }
}

impl Handler<Shutdown> for Registry {
    type Result = usize;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> usize {
        self.shutting_down = true;
        self.close_all(CloseCause::ShuttingDown)
    }
}

impl Handler<ChannelExpired> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ChannelExpired, _: &mut Context<Self>) {
        self.channels.remove(&msg.id);
        metrics::CHANNELS.set(self.channels.len() as i64);
    }
}
