//! Raft log storage: raft-rs `MemStorage` for entries and hard state, plus *our* snapshot —
//! `MemStorage` snapshots carry no state-machine data, so we keep the state captured at the
//! last compaction point and hand exactly that out when a follower needs a snapshot.
//!
//! With `WRS_DATA_DIR` every change is also written through to `disk` (raft-engine); reads
//! stay in memory (the log is compacted every `WRS_NODE_SNAPSHOT_LENGTH` entries, so it is
//! small). `flush` makes a Ready's writes durable with one fsync, before the core lets
//! raft-rs count them as persisted.

pub mod disk;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use self::disk::{Disk, DiskError, Restored};

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
    /// The data directory's store (`None`: memory only).
    disk: Option<Arc<Disk>>,
}

/// A failed write to the data directory ends the node (fail-stop, see `disk.rs`): raft-rs
/// must never be told that something is persisted which is not.
fn fatal(e: DiskError) -> ! {
    panic!("storage: {e}")
}

impl WrsStorage {
    /// Storage of a node that starts a new cluster alone, as its only voter.
    pub fn bootstrap(id: u64, data: Vec<u8>, disk: Option<Arc<Disk>>) -> raft::Result<WrsStorage> {
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 1;
        snap.mut_metadata().term = 1;
        snap.mut_metadata().mut_conf_state().voters = vec![id];
        snap.data = data.into();
        let storage = WrsStorage::empty(id, disk);
        storage.apply_snapshot(snap)?;
        Ok(storage)
    }

    /// Storage of a node that waits to be added to an existing cluster, as node `id`; its
    /// data directory (if any) is reset to hold just that identity.
    pub fn empty(id: u64, disk: Option<Arc<Disk>>) -> WrsStorage {
        if let Some(d) = &disk {
            d.reset(id).unwrap_or_else(|e| fatal(e));
        }
        WrsStorage {
            mem: MemStorage::new(),
            snapshot: Arc::new(RwLock::new(Snapshot::default())),
            wanted: Arc::default(),
            disk,
        }
    }

    /// Storage of a node restarted on its data directory: the snapshot, the entries after
    /// it and the hard state, as they were written. The conf state is the snapshot's (the
    /// state machine restarts from there; later conf changes replay with the entries).
    pub fn restore(restored: Restored, disk: Arc<Disk>) -> raft::Result<WrsStorage> {
        let mem = MemStorage::new();
        let snap = restored.snapshot.unwrap_or_default();
        let mut hs = restored.hard_state;
        {
            let mut core = mem.wl();
            if snap.get_metadata().index > 0 {
                core.apply_snapshot(snap.clone())?;
            }
            core.append(&restored.entries)?;
            let last = restored
                .entries
                .last()
                .map_or(snap.get_metadata().index, |e| e.index);
            // Only a cut-off tail (never acknowledged) can leave the commit index beyond
            // the log; raft-rs refuses to start on that, and the leader re-sends the rest.
            if hs.commit > last {
                log::warn!(
                    "storage: the hard state's commit index {} is beyond the log's last \
                     entry {last}; using {last}",
                    hs.commit
                );
                hs.commit = last;
            }
            hs.commit = hs.commit.max(snap.get_metadata().index);
            core.set_hardstate(hs);
        }
        Ok(WrsStorage {
            mem,
            snapshot: Arc::new(RwLock::new(snap)),
            wanted: Arc::default(),
            disk: Some(disk),
        })
    }

    /// Installs a snapshot (from the leader, or a bootstrap): on disk it replaces the log.
    pub fn apply_snapshot(&self, snap: Snapshot) -> raft::Result<()> {
        self.mem.wl().apply_snapshot(snap.clone())?;
        if let Some(d) = &self.disk {
            let hs = self.mem.rl().hard_state().clone();
            d.install(&snap, &hs).unwrap_or_else(|e| fatal(e));
        }
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
        if let Some(d) = &self.disk {
            let snap = self
                .snapshot
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            d.compact(&snap).unwrap_or_else(|e| fatal(e));
        }
        self.mem.wl().compact(index)
    }

    /// Makes everything appended or set since the last flush durable (`sync`: fsynced).
    pub fn flush(&self, sync: bool) {
        if let Some(d) = &self.disk {
            d.flush(sync).unwrap_or_else(|e| fatal(e));
        }
    }

    pub fn durable(&self) -> bool {
        self.disk.is_some()
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

    /// Appends entries (on disk: queued for the next `flush`).
    pub fn append(&self, entries: &[Entry]) -> raft::Result<()> {
        self.mem.wl().append(entries)?;
        if let Some(d) = &self.disk {
            d.append(entries).unwrap_or_else(|e| fatal(e));
        }
        Ok(())
    }

    pub fn set_hardstate(&self, hs: HardState) {
        if let Some(d) = &self.disk {
            d.set_hard_state(&hs).unwrap_or_else(|e| fatal(e));
        }
        self.mem.wl().set_hardstate(hs);
    }

    pub fn set_commit(&self, commit: u64) {
        let hs = {
            let mut core = self.mem.wl();
            core.mut_hard_state().set_commit(commit);
            core.hard_state().clone()
        };
        if let Some(d) = &self.disk {
            d.set_hard_state(&hs).unwrap_or_else(|e| fatal(e));
        }
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
