//! A channel's history for late joiners: the last messages of a pub-sub channel created with
//! `"history": N`, kept by the channel's owner as already-encoded frames (shared with the
//! outboxes, never copied). A pure ring buffer bounded by count (`N`), by bytes per channel
//! (`WRS_HISTORY_BYTES`) and by bytes per node (`WRS_HISTORY_TOTAL_BYTES`, one budget all of a
//! node's histories draw from); no I/O, unit-tested below.
//!
//! What it keeps is always a contiguous suffix of the channel's messages: a new message that
//! does not fit evicts the oldest ones, and one that cannot fit at all (larger than the
//! channel's bound, or the node's budget is held by other channels) empties it — a replay then
//! starts after that message rather than skipping it and leaving a gap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

/// The largest `history` a channel may be created with.
pub const MAX_HISTORY: u32 = 1000;

/// The byte bounds every history on one node shares: its own (`WRS_HISTORY_BYTES`) and the
/// node's budget (`WRS_HISTORY_TOTAL_BYTES`). Without the budget, a stranger who may create
/// channels could make a node hold `WRS_MAX_CHANNELS × WRS_HISTORY_BYTES` (100 GB by default).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    per_channel: usize,
    node_total: usize,
    /// Payload bytes held by all of this node's histories.
    used: Arc<AtomicUsize>,
}

impl Limits {
    pub fn new(per_channel: usize, node_total: usize) -> Limits {
        Limits {
            per_channel,
            node_total,
            used: Arc::default(),
        }
    }

    /// Payload bytes the node's histories hold together.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `n` bytes of the node's budget, if that many are free.
    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n)
                    .filter(|&total| total <= self.node_total)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

#[derive(Debug, Default)]
pub struct History {
    frames: VecDeque<Entry>,
    /// Payload bytes held by `frames` (all of them reserved in `limits`).
    bytes: usize,
    max_count: usize,
    limits: Limits,
}

#[derive(Debug)]
struct Entry {
    frame: Bytes,
    /// The message's payload size (what the byte bounds count).
    len: usize,
}

impl History {
    /// An empty history of at most `max_count` messages within `limits`; a count of 0 keeps
    /// nothing.
    pub fn new(max_count: usize, limits: &Limits) -> History {
        History {
            frames: VecDeque::new(),
            bytes: 0,
            max_count,
            limits: limits.clone(),
        }
    }

    /// Whether this history keeps anything at all.
    pub fn is_enabled(&self) -> bool {
        self.max_count > 0
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn evict_oldest(&mut self) -> bool {
        match self.frames.pop_front() {
            Some(old) => {
                self.bytes -= old.len;
                self.limits.give(old.len);
                true
            }
            None => false,
        }
    }

    /// Records one message (its encoded `frame`, `len` payload bytes), evicting the oldest
    /// ones past the count, the channel's bytes or the node's budget.
    pub fn push(&mut self, frame: Bytes, len: usize) {
        if !self.is_enabled() {
            return;
        }
        if len > self.limits.per_channel {
            self.clear();
            return;
        }
        while self.frames.len() >= self.max_count || self.bytes + len > self.limits.per_channel {
            self.evict_oldest();
        }
        while !self.limits.take(len) {
            if !self.evict_oldest() {
                // Other channels hold the node's budget: this one keeps nothing until there
                // is room again (empty, so still without a gap).
                return;
            }
        }
        self.frames.push_back(Entry { frame, len });
        self.bytes += len;
    }

    /// The newest `k` messages (fewer if fewer are kept), oldest first.
    pub fn last(&self, k: usize) -> impl Iterator<Item = &Bytes> {
        let skip = self.frames.len().saturating_sub(k);
        self.frames.iter().skip(skip).map(|e| &e.frame)
    }

    /// Forgets everything (the channel's owner moved away from this node), handing its bytes
    /// back to the node's budget.
    pub fn clear(&mut self) {
        while self.evict_oldest() {}
    }
}

impl Drop for History {
    /// A deleted channel, or one whose owner moved away, gives its bytes back.
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn kept(h: &History, k: usize) -> Vec<String> {
        h.last(k)
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn keeps_the_last_n_messages_oldest_first() {
        let mut h = History::new(3, &Limits::new(1 << 20, usize::MAX));
        for i in 0..5 {
            h.push(frame(&i.to_string()), 1);
        }
        assert_eq!(kept(&h, 10), ["2", "3", "4"]);
        assert_eq!(kept(&h, 2), ["3", "4"]);
        assert_eq!(kept(&h, 0), Vec::<String>::new());
        assert_eq!((h.len(), h.bytes()), (3, 3));
    }

    #[test]
    fn the_byte_bound_evicts_the_oldest_messages() {
        let mut h = History::new(100, &Limits::new(10, usize::MAX));
        for s in ["aaaa", "bbbb", "cccc"] {
            h.push(frame(s), s.len());
        }
        assert_eq!(kept(&h, 100), ["bbbb", "cccc"]);
        assert_eq!(h.bytes(), 8);
    }

    #[test]
    fn a_message_larger_than_the_byte_bound_empties_it_and_leaves_no_gap() {
        let mut h = History::new(100, &Limits::new(10, usize::MAX));
        h.push(frame("aa"), 2);
        h.push(frame("x".repeat(11).as_str()), 11);
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
        h.push(frame("bb"), 2);
        assert_eq!(kept(&h, 100), ["bb"]);
    }

    #[test]
    fn a_history_of_zero_keeps_nothing() {
        let mut h = History::new(0, &Limits::new(1 << 20, usize::MAX));
        h.push(frame("a"), 1);
        assert!(!h.is_enabled());
        assert!(h.is_empty());
    }

    #[test]
    fn the_node_budget_is_shared_and_given_back() {
        let limits = Limits::new(10, 12);
        let mut a = History::new(100, &limits);
        let mut b = History::new(100, &limits);
        for s in ["aaaa", "bbbb"] {
            a.push(frame(s), 4);
        }
        // 4 bytes of the node's 12 are left: b keeps one message at a time.
        b.push(frame("cccc"), 4);
        b.push(frame("dddd"), 4);
        assert_eq!(kept(&b, 100), ["dddd"]);
        assert_eq!(limits.used(), 12);
        // a message that cannot fit at all leaves b empty, not with a gap
        b.push(frame("eeeeee"), 6);
        assert!(b.is_empty());
        assert_eq!(limits.used(), 8);
        drop(a);
        assert_eq!(limits.used(), 0);
        b.push(frame("ffffffffff"), 10);
        assert_eq!(kept(&b, 100), ["ffffffffff"]);
        b.clear();
        assert_eq!(limits.used(), 0);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut h = History::new(5, &Limits::new(100, usize::MAX));
        h.push(frame("a"), 1);
        h.clear();
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
    }
}
