//! Raft log storage: raft-rs `MemStorage` for entries and hard state, plus *our* snapshot —
//! `MemStorage` snapshots carry no state-machine data, so we keep the state captured at the
//! last compaction point and hand exactly that out when a follower needs a snapshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

#[derive(Clone)]
pub struct WrsStorage {
    pub mem: MemStorage,
    /// The state-machine snapshot at the compaction point (index, term, conf state, data).
    snapshot: Arc<RwLock<Snapshot>>,
    /// Set when a peer asked for a snapshot that predates its membership; the node then
    /// captures a fresh one after its next Ready.
    wanted: Arc<AtomicBool>,
}

impl WrsStorage {
    /// Storage of a node that starts a new cluster alone, as its only voter.
    pub fn bootstrap(id: u64, data: Vec<u8>) -> raft::Result<WrsStorage> {
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 1;
        snap.mut_metadata().term = 1;
        snap.mut_metadata().mut_conf_state().voters = vec![id];
        snap.data = data.into();
        let mem = MemStorage::new();
        mem.wl().apply_snapshot(snap.clone())?;
        Ok(WrsStorage {
            mem,
            snapshot: Arc::new(RwLock::new(snap)),
            wanted: Arc::default(),
        })
    }

    /// Storage of a node that waits to be added to an existing cluster.
    pub fn empty() -> WrsStorage {
        WrsStorage {
            mem: MemStorage::new(),
            snapshot: Arc::new(RwLock::new(Snapshot::default())),
            wanted: Arc::default(),
        }
    }

    /// Installs a snapshot received from the leader.
    pub fn apply_snapshot(&self, snap: Snapshot) -> raft::Result<()> {
        self.mem.wl().apply_snapshot(snap.clone())?;
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snap;
        Ok(())
    }

    /// Records the state at `index` (already applied) as the snapshot handed to peers. The log
    /// after it stays, so a peer continues from it with ordinary appends.
    pub fn capture(&self, index: u64, conf_state: ConfState, data: Vec<u8>) -> raft::Result<()> {
        let term = self.mem.term(index)?;
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata().set_conf_state(conf_state);
        snap.data = data.into();
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snap;
        Ok(())
    }

    /// Captures the state at `index` and drops the log before it.
    pub fn compact(&self, index: u64, conf_state: ConfState, data: Vec<u8>) -> raft::Result<()> {
        self.capture(index, conf_state, data)?;
        self.mem.wl().compact(index)
    }

    /// Whether a peer asked for a newer snapshot since the last call.
    pub fn take_snapshot_request(&self) -> bool {
        self.wanted.swap(false, Ordering::Relaxed)
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get_metadata()
            .index
    }

    pub fn append(&self, entries: &[Entry]) -> raft::Result<()> {
        self.mem.wl().append(entries)
    }

    pub fn set_hardstate(&self, hs: HardState) {
        self.mem.wl().set_hardstate(hs);
    }

    pub fn set_commit(&self, commit: u64) {
        self.mem.wl().mut_hard_state().set_commit(commit);
    }

    pub fn set_conf_state(&self, cs: ConfState) {
        self.mem.wl().set_conf_state(cs);
    }
}

impl Storage for WrsStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let snap = self
            .snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let cs = snap.get_metadata().get_conf_state();
        let knows_peer = cs.voters.contains(&to) || cs.learners.contains(&to);
        if !knows_peer || snap.get_metadata().index < request_index {
            // A snapshot from before this peer joined would not let it take part: ask the
            // node for a fresh one; raft retries the send.
            self.wanted.store(true, Ordering::Relaxed);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(snap)
    }
}
