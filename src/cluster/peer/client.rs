//! The peer side that calls out: one long-lived WebSocket link per peer and purpose (awc's
//! client and `ws::Codec`, the framing the clients use), and typed JSON requests. Every call
//! has a connect timeout and every write a deadline (`WRS_NODE_DOWN_AFTER`), so a peer that
//! stopped reading cannot hold a link forever. A link is bounded in bytes: a sender either
//! gives up at once (`send`, for Raft, which retransmits) or waits for room (`send_later`, for
//! relay records: backpressure instead of loss).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Message, Recipient};
use awc::ws::Message as WsMessage;
use bytes::Bytes;
use futures_util::SinkExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::proof;
use super::wire::{ErrorBody, MAX_FRAME};
use super::{NODE_HEADER, PEER_HEADER};
use crate::metrics;
use crate::model::Member;

/// Connecting to a peer (TCP + upgrade) must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failed connection, wait this long before the next attempt.
const BACKOFF: Duration = Duration::from_millis(200);
/// Frames written before one flush, so one busy link still lets others run.
const MAX_BATCH: usize = 256;
/// A frame that waited this long in the queue is dropped instead of sent. Raft retransmits
/// what still matters; what must not happen is a forwarded proposal arriving after its
/// proposer already answered 503 (it waits `WRS_PROPOSE_TIMEOUT`, 5 s by default).
const MAX_AGE: Duration = Duration::from_secs(2);
/// An idle link sends a Ping this often, so the receiving end can tell an idle peer from one
/// that is cut off (`server::LINK_SILENCE`).
const PING_EVERY: Duration = Duration::from_millis(500);

/// What a link tells its owner (the Raft node needs it to pace retries and snapshots).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum LinkReport {
    /// The peer could not be reached; what was queued for it was dropped.
    Unreachable { to: u64, snapshot: bool },
    /// A snapshot reached the peer's socket.
    SnapshotSent(u64),
}

/// What a link carries, which decides how it treats delay.
pub enum Purpose {
    /// Raft messages: frames older than `MAX_AGE` are dropped (Raft retransmits) and the
    /// Raft node hears about failures and delivered snapshots.
    Raft(Recipient<LinkReport>),
    /// Relay records: accepted messages are sent however long they waited.
    Relay,
}

/// One frame queued on a link. Its bytes hold a share of the link's byte budget until it is
/// dropped — sent, stale or drained alike.
struct Outgoing {
    bytes: Bytes,
    snapshot: bool,
    queued: Instant,
    _budget: OwnedSemaphorePermit,
}

/// How a link is sized and guarded.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// `WRS_CLUSTER_SECRET`, to sign the upgrade.
    pub secret: Option<String>,
    /// Frames queued at most.
    pub frames: usize,
    /// Bytes queued at most (one frame larger than that fits an empty link, so a big snapshot
    /// still goes out).
    pub bytes: usize,
    /// A write (or keep-alive) that makes no progress for this long cuts the link.
    pub stall: Duration,
}

/// The sending end of a link to one peer. Dropping it ends the link.
pub struct Link {
    pub addr: String,
    tx: mpsc::Sender<Outgoing>,
    /// The byte budget: one permit per byte queued and not yet written (or dropped).
    budget: Arc<Semaphore>,
    max_bytes: usize,
}

impl Link {
    /// Opens a link from `me` to node `to` at `addr`, run on `arbiter`.
    pub fn open(
        arbiter: &actix::ArbiterHandle,
        me: &Member,
        to: u64,
        addr: String,
        settings: LinkSettings,
        purpose: Purpose,
    ) -> Link {
        let (tx, rx) = mpsc::channel(settings.frames.max(1));
        // The semaphore counts in u32 units; no link budget comes near 4 GiB.
        let max_bytes = settings.bytes.clamp(1, u32::MAX as usize);
        let dial = Dial {
            me: me.clone(),
            to,
            addr: addr.clone(),
            secret: settings.secret,
            stall: settings.stall,
        };
        // awc is not `Send`: the link's future is created on the arbiter's own thread.
        arbiter.spawn_fn(move || {
            actix_rt::spawn(run(dial, rx, purpose));
        });
        Link {
            addr,
            tx,
            budget: Arc::new(Semaphore::new(max_bytes)),
            max_bytes,
        }
    }

    fn units(&self, len: usize) -> u32 {
        // `max_bytes` fits a u32 (clamped in `open`), so the cast is exact.
        len.clamp(1, self.max_bytes) as u32
    }

    /// Queues one encoded frame now. False if the link is full (in frames or bytes) or gone;
    /// the frame is then dropped.
    pub fn send(&self, bytes: Bytes, snapshot: bool) -> bool {
        let Ok(permit) = Arc::clone(&self.budget).try_acquire_many_owned(self.units(bytes.len()))
        else {
            return false;
        };
        self.tx
            .try_send(Outgoing {
                bytes,
                snapshot,
                queued: Instant::now(),
                _budget: permit,
            })
            .is_ok()
    }

    /// Queues one encoded frame, waiting for room while the link is full. The future resolves
    /// to false only if the link is gone (the peer left, or this node dropped the link).
    pub fn send_later(&self, bytes: Bytes) -> impl Future<Output = bool> + 'static {
        let (budget, tx, units) = (
            Arc::clone(&self.budget),
            self.tx.clone(),
            self.units(bytes.len()),
        );
        async move {
            let Ok(permit) = budget.acquire_many_owned(units).await else {
                return false;
            };
            let frame = Outgoing {
                bytes,
                snapshot: false,
                queued: Instant::now(),
                _budget: permit,
            };
            tx.send(frame).await.is_ok()
        }
    }

    /// Bytes queued on this link right now.
    pub fn queued_bytes(&self) -> usize {
        self.max_bytes - self.budget.available_permits().min(self.max_bytes)
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

struct Dial {
    me: Member,
    to: u64,
    addr: String,
    secret: Option<String>,
    stall: Duration,
}

type Conn = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

impl Dial {
    async fn connect(&self) -> Result<Conn, String> {
        let client = awc::Client::builder()
            .timeout(CONNECT_TIMEOUT)
            .disable_redirects()
            .finish();
        let mut req = client
            .ws(format!("ws://{}/link", self.addr))
            .max_frame_size(MAX_FRAME)
            .set_header(NODE_HEADER, self.me.id.to_string())
            .set_header(PEER_HEADER, self.me.peer.as_str());
        if let Some(s) = &self.secret {
            let node = self.me.id.to_string();
            req = req.set_header(proof::AUTH_HEADER, proof::sign(s, "GET", "/link", &node));
        }
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, req.connect());
        match connect.await {
            Ok(Ok((_, conn))) => Ok(conn),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connect timed out".into()),
        }
    }
}

/// Writes queued frames to the peer, connecting when there is something to send. A failed
/// connection drops what is queued (Raft retransmits; the relay counts its loss) and is
/// retried after `BACKOFF`. Raft frames older than `MAX_AGE` are dropped; an idle open link
/// sends a Ping every `PING_EVERY`.
async fn run(dial: Dial, mut rx: mpsc::Receiver<Outgoing>, purpose: Purpose) {
    let (reports, max_age) = match purpose {
        Purpose::Raft(to) => (Some(to), MAX_AGE),
        Purpose::Relay => (None, Duration::MAX),
    };
    let relay = reports.is_none();
    let report = |r: LinkReport| {
        if let Some(to) = &reports {
            to.do_send(r);
        }
    };
    // Relay records are messages clients sent: each one lost is counted.
    let lost = |n: usize| {
        if relay && n > 0 {
            log::warn!("relay: {n} records for node {} lost", dial.to);
            metrics::RELAY_LOST.inc_by(n as u64);
        }
    };
    let stall = dial.stall;
    let mut conn: Option<Conn> = None;
    loop {
        let first = match tokio::time::timeout(PING_EVERY, rx.recv()).await {
            Ok(Some(first)) => first,
            Ok(None) => break,
            Err(_) => {
                if let Some(c) = conn.as_mut() {
                    let ping = c.send(WsMessage::Ping(Bytes::new()));
                    if !matches!(tokio::time::timeout(stall, ping).await, Ok(Ok(()))) {
                        log::info!(
                            "peer: link to node {} at {} cut: ping failed",
                            dial.to,
                            dial.addr
                        );
                        conn = None;
                        report(LinkReport::Unreachable {
                            to: dial.to,
                            snapshot: false,
                        });
                    }
                }
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        // One clock reading, so a frame is either kept or dropped and reported, never both.
        let now = Instant::now();
        let is_stale = |o: &Outgoing| now.saturating_duration_since(o.queued) > max_age;
        if batch.iter().any(is_stale) {
            let (stale, fresh): (Vec<_>, Vec<_>) = batch.into_iter().partition(is_stale);
            batch = fresh;
            log::debug!(
                "peer: dropped {} stale frames for node {}",
                stale.len(),
                dial.to
            );
            report(LinkReport::Unreachable {
                to: dial.to,
                snapshot: stale.iter().any(|o| o.snapshot),
            });
            if batch.is_empty() {
                continue;
            }
        }
        let snapshot = batch.iter().any(|o| o.snapshot);
        if conn.is_none() {
            match dial.connect().await {
                Ok(c) => {
                    log::debug!("peer: link to node {} at {} open", dial.to, dial.addr);
                    conn = Some(c);
                }
                Err(e) => {
                    log::debug!("peer: node {} at {} unreachable: {e}", dial.to, dial.addr);
                    report(LinkReport::Unreachable {
                        to: dial.to,
                        snapshot,
                    });
                    lost(batch.len() + drain(&mut rx));
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let count = batch.len();
        let write = async {
            for o in batch {
                // A cheap clone (a reference count): `o` gives its bytes back to the budget
                // once the sink holds them.
                c.feed(WsMessage::Binary(o.bytes.clone())).await?;
            }
            c.flush().await
        };
        match tokio::time::timeout(stall, write).await {
            Ok(Ok(())) => {
                if snapshot {
                    report(LinkReport::SnapshotSent(dial.to));
                }
            }
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "write timed out".into(),
                };
                log::info!("peer: link to node {} at {} cut: {why}", dial.to, dial.addr);
                conn = None;
                // What the socket took before the cut may have arrived; count the batch as lost.
                lost(count);
                report(LinkReport::Unreachable {
                    to: dial.to,
                    snapshot,
                });
            }
        }
    }
    if let Some(mut c) = conn {
        let _ = tokio::time::timeout(BACKOFF, c.close()).await;
    }
}

/// Drops everything queued; how many frames that was.
fn drain(rx: &mut mpsc::Receiver<Outgoing>) -> usize {
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    n
}

/// Why a peer request failed.
#[derive(Debug)]
pub enum RequestError {
    /// No answer (connect, timeout, unreadable body).
    Unreachable(String),
    /// The peer answered with an error status and body.
    Refused(awc::http::StatusCode, ErrorBody),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Unreachable(e) => write!(f, "{e}"),
            RequestError::Refused(status, body) => write!(f, "{status} {}", body.message),
        }
    }
}

thread_local! {
    /// One HTTP client per thread (awc is not `Send`), so requests reuse connections.
    static CLIENT: awc::Client = awc::Client::builder().disable_redirects().finish();
}

fn pooled_client() -> awc::Client {
    CLIENT.with(awc::Client::clone)
}

/// Posts `body` as JSON to `path` on the peer port at `addr` and reads the typed answer.
pub async fn post<B: Serialize, R: DeserializeOwned>(
    addr: &str,
    path: &str,
    secret: Option<&str>,
    body: &B,
    timeout: Duration,
) -> Result<R, RequestError> {
    let req = signed(addr, path, secret, timeout);
    let unreachable = |e: &dyn std::fmt::Display| RequestError::Unreachable(format!("{addr}: {e}"));
    let res = req.send_json(body).await.map_err(|e| unreachable(&e))?;
    answer(addr, res).await
}

/// Posts raw `body` bytes (a bincode-encoded wire type) to `path` on the peer port at `addr`
/// and reads the typed JSON answer.
pub async fn post_bytes<R: DeserializeOwned>(
    addr: &str,
    path: &str,
    secret: Option<&str>,
    body: Bytes,
    timeout: Duration,
) -> Result<R, RequestError> {
    let req = signed(addr, path, secret, timeout)
        .insert_header(("content-type", "application/octet-stream"));
    let unreachable = |e: &dyn std::fmt::Display| RequestError::Unreachable(format!("{addr}: {e}"));
    let res = req.send_body(body).await.map_err(|e| unreachable(&e))?;
    answer(addr, res).await
}

/// A POST to a peer route, signed with the cluster secret when there is one.
fn signed(addr: &str, path: &str, secret: Option<&str>, timeout: Duration) -> awc::ClientRequest {
    let mut req = pooled_client()
        .post(format!("http://{addr}{path}"))
        .timeout(timeout);
    if let Some(s) = secret {
        req = req.insert_header((proof::AUTH_HEADER, proof::sign(s, "POST", path, "")));
    }
    req
}

/// Reads a peer's answer: the typed body on success, its `ErrorBody` otherwise.
async fn answer<S, R>(addr: &str, mut res: awc::ClientResponse<S>) -> Result<R, RequestError>
where
    S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
    R: DeserializeOwned,
{
    let unreachable = |e: &dyn std::fmt::Display| RequestError::Unreachable(format!("{addr}: {e}"));
    if res.status().is_success() {
        return res
            .json::<R>()
            .limit(MAX_FRAME)
            .await
            .map_err(|e| unreachable(&e));
    }
    let status = res.status();
    match res.json::<ErrorBody>().limit(64 << 10).await {
        Ok(body) => Err(RequestError::Refused(status, body)),
        Err(e) => Err(unreachable(&format!("{status}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay link of `budget` bytes to a peer that accepts TCP connections (the kernel's
    /// backlog) but never answers the upgrade; the listener must be kept alive.
    fn silent_link(budget: usize) -> (Link, std::net::TcpListener) {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr").to_string();
        let me = Member {
            id: 1,
            api: "127.0.0.1:1".into(),
            peer: "127.0.0.1:1".into(),
        };
        let settings = LinkSettings {
            secret: None,
            frames: 1 << 16,
            bytes: budget,
            stall: Duration::from_secs(5),
        };
        let link = Link::open(
            &actix::Arbiter::current(),
            &me,
            2,
            addr,
            settings,
            Purpose::Relay,
        );
        (link, silent)
    }

    #[actix_rt::test]
    async fn a_link_to_a_peer_that_never_answers_queues_at_most_its_byte_budget() {
        let budget = 4 << 20;
        let (link, _silent) = silent_link(budget);
        let frame = Bytes::from(vec![7u8; 256 << 10]);
        let accepted = (0..64).filter(|_| link.send(frame.clone(), false)).count();
        let queued = link.queued_bytes();
        eprintln!("offered 64 x 256 KiB, accepted {accepted}, queued {queued} bytes");
        assert!(accepted <= budget / frame.len() + 1, "accepted {accepted}");
        assert!(queued <= budget + frame.len(), "queued {queued}");
        assert!(
            accepted >= budget / frame.len() - 1,
            "the budget was not used: {accepted}"
        );
        assert!(
            !link.send(frame, false),
            "a full link refuses the next frame"
        );
    }

    #[actix_rt::test]
    async fn a_full_relay_link_makes_its_sender_wait_and_queues_the_frame_once_there_is_room() {
        // The connect gives up after CONNECT_TIMEOUT, dropping (and counting) what was
        // queued — which frees the budget.
        let (link, _silent) = silent_link(1 << 20);
        let frame = Bytes::from(vec![7u8; 256 << 10]);
        let accepted = (0..4).filter(|_| link.send(frame.clone(), false)).count();
        assert_eq!(accepted, 4, "the budget holds four frames");
        assert!(
            !link.send(frame.clone(), false),
            "the fifth does not fit now"
        );
        let lost_before = metrics::RELAY_LOST.get();
        let mut later = Box::pin(link.send_later(frame));
        let early = tokio::time::timeout(Duration::from_millis(300), &mut later).await;
        assert!(
            early.is_err(),
            "the sender must wait while the link is full"
        );
        let waited = std::time::Instant::now();
        let queued = tokio::time::timeout(CONNECT_TIMEOUT * 3, later).await;
        eprintln!(
            "waited {:?} more; lost {} records",
            waited.elapsed(),
            metrics::RELAY_LOST.get() - lost_before
        );
        assert_eq!(queued, Ok(true), "queued once the budget had room");
        assert!(
            metrics::RELAY_LOST.get() >= lost_before + 4,
            "the dropped frames are counted"
        );
    }
}
