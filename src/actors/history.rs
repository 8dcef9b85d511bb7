//! A channel's history for late joiners: the last messages of a pub-sub channel created with
//! `"history": N`, kept by the channel's owner as already-encoded frames (shared with the
//! outboxes, never copied). A pure ring buffer bounded by count (`N`) *and* bytes
//! (`WRS_HISTORY_BYTES`); no I/O, unit-tested below.
//!
//! What it keeps is always a contiguous suffix of the channel's messages: a new message that
//! does not fit evicts the oldest ones, and one larger than the whole byte bound empties it (a
//! replay then starts after that message rather than skipping it and leaving a gap).

use std::collections::VecDeque;

use bytes::Bytes;

/// The largest `history` a channel may be created with.
pub const MAX_HISTORY: u32 = 1000;

#[derive(Debug, Default)]
pub struct History {
    frames: VecDeque<Entry>,
    /// Payload bytes held by `frames`.
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    frame: Bytes,
    /// The message's payload size (what the byte bound counts).
    len: usize,
}

impl History {
    /// An empty history of at most `max_count` messages and `max_bytes` payload bytes; a
    /// count of 0 keeps nothing.
    pub fn new(max_count: usize, max_bytes: usize) -> History {
        History {
            frames: VecDeque::new(),
            bytes: 0,
            max_count,
            max_bytes,
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

    /// Records one message (its encoded `frame`, `len` payload bytes), evicting the oldest
    /// ones past either bound.
    pub fn push(&mut self, frame: Bytes, len: usize) {
        if !self.is_enabled() {
            return;
        }
        self.frames.push_back(Entry { frame, len });
        self.bytes += len;
        while self.frames.len() > self.max_count || self.bytes > self.max_bytes {
            match self.frames.pop_front() {
                Some(old) => self.bytes -= old.len,
                None => break,
            }
        }
    }

    /// The newest `k` messages (fewer if fewer are kept), oldest first.
    pub fn last(&self, k: usize) -> impl Iterator<Item = &Bytes> {
        let skip = self.frames.len().saturating_sub(k);
        self.frames.iter().skip(skip).map(|e| &e.frame)
    }

    /// Forgets everything (the channel's owner moved away from this node).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
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
        let mut h = History::new(3, 1 << 20);
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
        let mut h = History::new(100, 10);
        for s in ["aaaa", "bbbb", "cccc"] {
            h.push(frame(s), s.len());
        }
        assert_eq!(kept(&h, 100), ["bbbb", "cccc"]);
        assert_eq!(h.bytes(), 8);
    }

    #[test]
    fn a_message_larger_than_the_byte_bound_empties_it_and_leaves_no_gap() {
        let mut h = History::new(100, 10);
        h.push(frame("aa"), 2);
        h.push(frame("x".repeat(11).as_str()), 11);
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
        h.push(frame("bb"), 2);
        assert_eq!(kept(&h, 100), ["bb"]);
    }

    #[test]
    fn a_history_of_zero_keeps_nothing() {
        let mut h = History::new(0, 1 << 20);
        h.push(frame("a"), 1);
        assert!(!h.is_enabled());
        assert!(h.is_empty());
    }

    #[test]
    fn clear_forgets_everything() {
        let mut h = History::new(5, 100);
        h.push(frame("a"), 1);
        h.clear();
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
    }
}
