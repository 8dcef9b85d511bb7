//! One client's bounded send queue of already-encoded WebSocket frames, and the response body
//! that drains it onto the socket. The channel actor pushes; the HTTP dispatcher pulls.
//!
//! Why not a channel: the writer is woken only when the queue goes from empty to non-empty and
//! then takes what is queued in as few chunks as it can, so a burst costs one wake-up and one
//! write (measured: docs/architecture.md, "Measured facts"). Why encoded frames: server frames
//! are unmasked, so the channel encodes a message once and every recipient shares the same
//! `Bytes`.
//!
//! Bounds: a queue holds at most `capacity` frames *and* `capacity_bytes` bytes (one frame
//! larger than that is still accepted into an empty queue, or such a message could never be
//! delivered), so a client that never reads pins at most about `capacity_bytes`, whatever its
//! message size. Frames are never copied when drained, except that small ones are gathered
//! into one chunk of at most `GATHER` bytes: the HTTP layer copies every chunk into its write
//! buffer anyway, and one chunk is one poll instead of hundreds.
//!
//! Flow control: a queue at half its capacity whose writer is still draining is *busy*, not
//! slow; the channel then waits (briefly, bounded) for a drain instead of outrunning the
//! socket. Only a queue whose oldest frame has waited `STALLED_AFTER` counts as stalled, and
//! only a full queue disconnects its client.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_http::ws::{CloseCode, CloseReason, OpCode, Parser};
use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use futures_util::Stream;
use tokio::sync::Notify;

use crate::error::CloseCause;

/// Encodes one unmasked (server-to-client) data or control frame.
pub fn encode(op: OpCode, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(payload.len() + 10);
    Parser::write_message(&mut buf, payload, op, true, false);
    buf.freeze()
}

/// Encodes a close frame with a code and reason.
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(reason.len() + 4);
    let reason = CloseReason {
        code: CloseCode::from(code),
        description: (!reason.is_empty()).then(|| reason.to_owned()),
    };
    Parser::write_close(&mut buf, Some(reason), false);
    buf.freeze()
}

#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds its capacity: the client is a slow consumer.
    Full,
    /// The connection is closing or closed.
    Closed,
}

/// A queue whose oldest frame waited this long has a writer that is not draining: its socket
/// is jammed, and the channel stops waiting for it.
pub const STALLED_AFTER: Duration = Duration::from_millis(100);

/// Frames smaller than this are gathered into chunks of at most this many bytes; larger
/// frames leave the queue as they are (no copy).
const GATHER: usize = 64 << 10;

#[derive(Default)]
struct Inner {
    queue: VecDeque<Bytes>,
    /// The bytes held by `queue`.
    bytes: usize,
    /// When the queue last went from empty to non-empty (the oldest frame's age).
    pending_since: Option<Instant>,
    /// The close frame to send after the queue, once set nothing more is accepted.
    close: Option<Bytes>,
}

pub struct Outbox {
    inner: Mutex<Inner>,
    waker: AtomicWaker,
    /// Signalled after every drain, for a channel waiting on a busy queue.
    drained: Notify,
    capacity: usize,
    capacity_bytes: usize,
    /// When the client connected (ms since the Unix epoch): what presence lists show, kept
    /// with the outbox so it survives a move of the channel's owner.
    connected_at_ms: u64,
}

/// The state of a queue after a push, for the channel's flow control.
#[derive(Debug, PartialEq, Eq)]
pub enum Backlog {
    /// Below half its capacity.
    Fine,
    /// At half its capacity or more, with a writer that is still draining.
    Busy,
    /// At half its capacity or more, and nothing drained for `STALLED_AFTER`.
    Stalled,
}

impl Outbox {
    /// A queue of at most `capacity` frames and `capacity_bytes` bytes.
    pub fn new(capacity: usize, capacity_bytes: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            inner: Mutex::new(Inner::default()),
            waker: AtomicWaker::new(),
            drained: Notify::new(),
            capacity,
            capacity_bytes,
            connected_at_ms: crate::model::now_ms(),
        })
    }

    /// When the client connected, in ms since the Unix epoch.
    pub fn connected_at_ms(&self) -> u64 {
        self.connected_at_ms
    }

    /// At half its capacity (in frames or in bytes) or more.
    fn half_full(&self, inner: &Inner) -> bool {
        inner.queue.len() * 2 >= self.capacity || inner.bytes * 2 >= self.capacity_bytes
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the queue inconsistent; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one encoded frame; wakes the writer only if the queue was empty.
    pub fn push(&self, frame: Bytes) -> Result<Backlog, PushError> {
        self.push_at(frame, Instant::now())
    }

    /// `push` with the caller's clock reading (one per message, not one per recipient).
    pub fn push_at(&self, frame: Bytes, now: Instant) -> Result<Backlog, PushError> {
        let mut inner = self.lock();
        if inner.close.is_some() {
            return Err(PushError::Closed);
        }
        let too_many_bytes =
            !inner.queue.is_empty() && inner.bytes + frame.len() > self.capacity_bytes;
        if inner.queue.len() >= self.capacity || too_many_bytes {
            return Err(PushError::Full);
        }
        inner.bytes += frame.len();
        inner.queue.push_back(frame);
        let len = inner.queue.len();
        let half_full = self.half_full(&inner);
        let backlog = if len == 1 {
            inner.pending_since = Some(now);
            Backlog::Fine
        } else if inner
            .pending_since
            .is_some_and(|t| now.saturating_duration_since(t) >= STALLED_AFTER)
        {
            Backlog::Stalled
        } else {
            Backlog::Busy
        };
        drop(inner);
        if len == 1 {
            self.waker.wake();
        }
        if !half_full {
            return Ok(Backlog::Fine);
        }
        Ok(backlog)
    }

    /// Resolves after the writer's next drain (or at once if the queue is below half).
    pub async fn drain(&self) {
        let notified = self.drained.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let inner = self.lock();
            if !self.half_full(&inner) || inner.close.is_some() {
                return;
            }
        }
        notified.await;
    }

    /// Sends what is queued, then a close frame with `code`/`reason`; nothing is accepted after.
    /// Returns false if the outbox was already closing.
    pub fn close_with(&self, code: u16, reason: &str) -> bool {
        let mut inner = self.lock();
        if inner.close.is_some() {
            return false;
        }
        inner.close = Some(encode_close(code, reason));
        drop(inner);
        self.waker.wake();
        true
    }

    /// Closes for a server-side cause. A slow consumer's queue is dropped first, so the close
    /// frame goes next and the memory is freed at once.
    pub fn close(&self, cause: CloseCause) -> bool {
        if cause == CloseCause::SlowConsumer {
            let mut inner = self.lock();
            inner.queue.clear();
            inner.bytes = 0;
        }
        let closed = self.close_with(cause.code(), cause.reason());
        self.drained.notify_waiters();
        closed
    }

    pub fn is_closed(&self) -> bool {
        self.lock().close.is_some()
    }

    /// The response body that writes this outbox to the socket.
    pub fn body(self: &Arc<Self>) -> OutboxBody {
        OutboxBody {
            outbox: Arc::clone(self),
            done: false,
        }
    }
}

/// Streams the outbox: every poll takes all queued frames as one chunk; after the close frame
/// the stream ends and the HTTP layer closes the connection.
pub struct OutboxBody {
    outbox: Arc<Outbox>,
    done: bool,
}

impl Stream for OutboxBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // Register before looking, so a push between the look and the return is not missed.
        self.outbox.waker.register(cx.waker());
        let mut inner = self.outbox.lock();
        let chunk = take_chunk(&mut inner.queue);
        if let Some(c) = &chunk {
            inner.bytes -= c.len();
            inner.pending_since = (!inner.queue.is_empty()).then(Instant::now);
        }
        // The close frame goes only after the last queued frame.
        let close = inner.close.clone().filter(|_| inner.queue.is_empty());
        drop(inner);
        if chunk.is_some() {
            self.outbox.drained.notify_waiters();
        }
        match (chunk, close) {
            (Some(chunk), Some(close)) => {
                self.done = true;
                let mut buf = BytesMut::with_capacity(chunk.len() + close.len());
                buf.extend_from_slice(&chunk);
                buf.extend_from_slice(&close);
                Poll::Ready(Some(Ok(buf.freeze())))
            }
            (Some(chunk), None) => Poll::Ready(Some(Ok(chunk))),
            (None, Some(close)) => {
                self.done = true;
                Poll::Ready(Some(Ok(close)))
            }
            (None, None) => Poll::Pending,
        }
    }
}

/// Takes the next chunk off the queue: a large frame alone, as it is; or a run of small
/// frames gathered into one buffer of at most `GATHER` bytes.
fn take_chunk(queue: &mut VecDeque<Bytes>) -> Option<Bytes> {
    let first = queue.front()?.len();
    let run = queue
        .iter()
        .scan(0usize, |size, f| {
            *size += f.len();
            (f.len() < GATHER && *size <= GATHER).then_some(())
        })
        .count();
    if first >= GATHER || run <= 1 {
        return queue.pop_front();
    }
    let size = queue.iter().take(run).map(Bytes::len).sum();
    let mut buf = BytesMut::with_capacity(size);
    for frame in queue.drain(..run) {
        buf.extend_from_slice(&frame);
    }
    Some(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn text(s: &str) -> Bytes {
        encode(OpCode::Text, s.as_bytes())
    }

    #[actix_rt::test]
    async fn drains_everything_queued_in_one_chunk_then_the_close_frame() {
        let outbox = Outbox::new(8, 1 << 20);
        let mut body = outbox.body();
        assert_eq!(outbox.push(text("a")), Ok(Backlog::Fine));
        assert_eq!(outbox.push(text("b")), Ok(Backlog::Fine));
        let chunk = body.next().await.unwrap().unwrap();
        assert_eq!(&chunk[..], &[0x81, 1, b'a', 0x81, 1, b'b']);
        outbox.close_with(1000, "");
        let close = body.next().await.unwrap().unwrap();
        assert_eq!(&close[..], &[0x88, 2, 0x03, 0xe8]);
        assert!(body.next().await.is_none());
    }

    #[test]
    fn a_full_queue_reports_a_slow_consumer_and_a_closed_one_refuses() {
        let outbox = Outbox::new(2, 1 << 20);
        assert_eq!(outbox.push(text("1")), Ok(Backlog::Fine));
        assert_eq!(outbox.push(text("2")), Ok(Backlog::Busy));
        assert_eq!(outbox.push(text("3")), Err(PushError::Full));
        assert!(outbox.close(CloseCause::SlowConsumer));
        assert!(
            !outbox.close(CloseCause::ChannelDeleted),
            "first close wins"
        );
        assert_eq!(outbox.push(text("4")), Err(PushError::Closed));
        assert!(
            outbox.lock().queue.is_empty(),
            "slow consumer's queue is dropped"
        );
    }

    #[actix_rt::test]
    async fn a_busy_queue_is_released_by_the_next_drain_and_ages_into_stalled() {
        let outbox = Outbox::new(4, 1 << 20);
        let mut body = outbox.body();
        outbox.push(text("1")).unwrap();
        assert_eq!(outbox.push(text("2")), Ok(Backlog::Busy));
        let wait = outbox.drain();
        let read = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            body.next().await
        };
        let ((), chunk) = tokio::join!(wait, read);
        assert!(chunk.is_some());
        outbox.push(text("3")).unwrap();
        std::thread::sleep(STALLED_AFTER);
        assert_eq!(outbox.push(text("4")), Ok(Backlog::Stalled));
    }

    #[test]
    fn the_byte_bound_refuses_what_the_frame_bound_would_take() {
        let outbox = Outbox::new(1024, 100);
        let big = Bytes::from(vec![0u8; 60]);
        assert_eq!(outbox.push(big.clone()), Ok(Backlog::Fine));
        assert_eq!(outbox.push(big.clone()), Err(PushError::Full));
        let alone = Outbox::new(1024, 100);
        let huge = Bytes::from(vec![0u8; 1000]);
        assert!(
            alone.push(huge).is_ok(),
            "one oversized frame fits an empty queue"
        );
        assert_eq!(alone.push(text("x")), Err(PushError::Full));
    }

    #[actix_rt::test]
    async fn large_frames_leave_the_queue_uncopied_and_small_ones_are_gathered() {
        let outbox = Outbox::new(1024, 16 << 20);
        let mut body = outbox.body();
        let large = Bytes::from(vec![7u8; GATHER * 2]);
        outbox.push(text("a")).unwrap();
        outbox.push(text("b")).unwrap();
        outbox.push(large.clone()).unwrap();
        outbox.push(text("c")).unwrap();
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(&first[..], &[0x81, 1, b'a', 0x81, 1, b'b']);
        let second = body.next().await.unwrap().unwrap();
        assert_eq!(
            second.as_ptr(),
            large.as_ptr(),
            "the large frame is the same buffer"
        );
        let third = body.next().await.unwrap().unwrap();
        assert_eq!(&third[..], &[0x81, 1, b'c']);
        assert_eq!(outbox.lock().bytes, 0);
    }
}
