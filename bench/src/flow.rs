//! Publisher-side flow control and the stop signal shared by the relay scenarios.
//!
//! In max-rate mode a publisher keeps at most `window` messages in flight (counted from the
//! receivers' acknowledgements inside this process), so the server is driven at its maximum
//! without piling up an unbounded backlog (which would only measure queueing, and on wrs trip
//! the slow-consumer limit). When blocked it waits until half the window has drained, so a
//! busy publisher is woken once per `window / 2` messages, not once per message.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

pub struct Flow {
    acked: AtomicU64,
    want: AtomicU64,
    notify: Notify,
}

impl Default for Flow {
    fn default() -> Self {
        Flow {
            acked: AtomicU64::new(0),
            want: AtomicU64::new(u64::MAX),
            notify: Notify::new(),
        }
    }
}

impl Flow {
    pub fn ack(&self) {
        let v = self.acked.fetch_add(1, Ordering::Relaxed) + 1;
        if v >= self.want.load(Ordering::Relaxed) {
            self.want.store(u64::MAX, Ordering::Relaxed);
            self.notify.notify_one();
        }
    }
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
    /// Wait until `need` acknowledgements arrived; false if `stop` was raised or `deadline`
    /// (ns) passed first (a waiting publisher is woken by `kick` to notice either).
    pub async fn wait_for(&self, need: u64, stop: &Stop, deadline: u64) -> bool {
        loop {
            if self.acked() >= need {
                return true;
            }
            if stop.raised() || crate::common::now_ns() >= deadline {
                return false;
            }
            self.want.store(need, Ordering::Relaxed);
            if self.acked() >= need {
                self.want.store(u64::MAX, Ordering::Relaxed);
                return true;
            }
            self.notify.notified().await;
        }
    }
    /// Wake a waiting publisher (used with `Stop`).
    pub fn kick(&self) {
        self.notify.notify_one();
    }
}

/// A one-way stop flag with a wake-up for tasks parked in `select!`.
pub struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            flag: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }
}

impl Stop {
    pub fn raise(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
    pub fn raised(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
    /// Resolves once `raise` was called (also if it was called before).
    pub async fn wait(&self) {
        loop {
            let n = self.notify.notified();
            if self.raised() {
                return;
            }
            n.await;
            if self.raised() {
                return;
            }
        }
    }
}
