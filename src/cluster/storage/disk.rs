//! The Raft log on disk (`WRS_DATA_DIR`), in tikv's raft-engine: entries, hard state, the
//! last compaction snapshot and this node's identity, each write one atomic batch.
//!
//! Two raft-engine groups: `LOG` holds the entries (so a snapshot from the leader can drop
//! them all with one `Clean`), `META` the key-values. The state machine itself is not stored:
//! on restart it is the snapshot's state plus the committed entries after it, applied again
//! (raft-rs hands them out because the restored node's `applied` is the snapshot index) — so
//! the conf state to restore is the snapshot's too, and conf changes after it replay in order.
//!
//! Failure is fail-stop: raft-engine panics if `fsync` fails (after a failed fsync the page
//! cache can no longer be trusted), and a write error ends the node the same way; the panic
//! hook exits with 70 so the orchestrator restarts it over what *was* made durable.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};
use raft_engine::{Command, Config, Engine, LogBatch, MessageExt, ReadableSize, RecoveryMode};
use serde::{Deserialize, Serialize};

/// The raft-engine group of the log entries.
const LOG: u64 = 1;
/// The raft-engine group of the key-values below.
const META: u64 = 2;
const IDENTITY: &[u8] = b"identity";
const HARD_STATE: &[u8] = b"hard_state";
const SNAPSHOT: &[u8] = b"snapshot";
/// The version of what this module writes; a newer one refuses to start on an older binary.
const FORMAT: u32 = 1;
/// The subdirectory of `WRS_DATA_DIR` the engine owns (the volume's root may hold other
/// things, e.g. the `lost+found` of a fresh ext4 volume).
const SUBDIR: &str = "raft";

/// How raft-entries tell raft-engine their index.
struct RaftEntries;

impl MessageExt for RaftEntries {
    type Entry = Entry;

    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// Why a data directory cannot be used. Every message names the path.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("WRS_DATA_DIR {path}: {what}")]
    Unusable { path: String, what: String },
}

fn unusable(path: &Path, what: impl Into<String>) -> DiskError {
    DiskError::Unusable {
        path: path.display().to_string(),
        what: what.into(),
    }
}

/// What this node wrote about itself first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    format: u32,
    /// The node's Raft id: a restarted node is the same member.
    node: u64,
}

/// What a restarted node finds: its last compaction snapshot (the state machine at its
/// index) and everything logged after it.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    pub node: u64,
    /// `None` if the node never joined a cluster (it waits to be added again, same id).
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub hard_state: HardState,
}

pub struct Disk {
    engine: Engine,
    path: PathBuf,
    /// What the current Ready asked to keep, written by `flush`.
    pending: Mutex<LogBatch>,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk").field("path", &self.path).finish()
    }
}

/// Whether raft-engine could have written a file of this name (the lock, log files and
/// files it keeps for recycling).
fn engine_file(name: &str) -> bool {
    name == "LOCK"
        || [".raftlog", ".rewrite", ".raftlog.reserved"]
            .iter()
            .any(|s| {
                name.ends_with(s)
                    && name[..name.len() - s.len()]
                        .bytes()
                        .all(|b| b.is_ascii_digit())
            })
}

impl Disk {
    /// Opens (or creates) the store under `dir`. A directory that holds something else, a
    /// store written by a newer wrs, a damaged log or one held by another running node is an
    /// error naming the path — never a silent empty start over it.
    pub fn open(dir: &Path) -> Result<(Disk, Option<Restored>), DiskError> {
        let path = dir.join(SUBDIR);
        std::fs::create_dir_all(&path)
            .map_err(|e| unusable(&path, format!("cannot create: {e}")))?;
        let listing =
            std::fs::read_dir(&path).map_err(|e| unusable(&path, format!("cannot read: {e}")))?;
        // A log file before opening means this directory was used: from then on it must hold
        // an identity (raft-engine cuts a damaged last file to nothing rather than fail).
        let mut used = false;
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            used |= name != "LOCK";
            if !engine_file(&name) {
                return Err(unusable(
                    &path,
                    format!("holds {name:?}, which wrs did not write: not a wrs data directory"),
                ));
            }
        }
        let cfg = Config {
            dir: path.display().to_string(),
            // A torn last write (power loss mid-append) was never acknowledged: it is cut
            // off. Damage anywhere before it is an error.
            recovery_mode: RecoveryMode::TolerateTailCorruption,
            recovery_threads: 1,
            target_file_size: ReadableSize::mb(8),
            purge_threshold: ReadableSize::mb(32),
            ..Config::default()
        };
        let engine = Engine::open(cfg).map_err(|e| {
            unusable(
                &path,
                format!("cannot open the Raft log (damaged, or in use by another node): {e}"),
            )
        })?;
        let disk = Disk {
            engine,
            path: path.clone(),
            pending: Mutex::new(LogBatch::default()),
        };
        let restored = disk.restore(used)?;
        Ok((disk, restored))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, what: impl Into<String>) -> DiskError {
        unusable(&self.path, what)
    }

    fn restore(&self, used: bool) -> Result<Option<Restored>, DiskError> {
        let Some(raw) = self.engine.get(META, IDENTITY) else {
            if self.engine.is_empty() && !used {
                return Ok(None);
            }
            return Err(self.fail(
                "has log files but no identity record: damaged or truncated (if this node \
                 never ran, remove the directory; otherwise restore it from a backup)",
            ));
        };
        let identity: Identity = serde_json::from_slice(&raw)
            .map_err(|e| self.fail(format!("unreadable identity record: {e}")))?;
        if identity.format > FORMAT {
            return Err(self.fail(format!(
                "written by a newer wrs (format {}, this one reads {FORMAT})",
                identity.format
            )));
        }
        let snapshot = match self.engine.get(META, SNAPSHOT) {
            Some(bytes) => Some(
                Snapshot::parse_from_bytes(&bytes)
                    .map_err(|e| self.fail(format!("unreadable snapshot: {e}")))?,
            ),
            None => None,
        };
        let hard_state = match self.engine.get(META, HARD_STATE) {
            Some(bytes) => HardState::parse_from_bytes(&bytes)
                .map_err(|e| self.fail(format!("unreadable hard state: {e}")))?,
            None => HardState::default(),
        };
        let after = snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
        let mut entries = Vec::new();
        if let (Some(first), Some(last)) =
            (self.engine.first_index(LOG), self.engine.last_index(LOG))
        {
            let from = first.max(after + 1);
            if first > after + 1 {
                return Err(self.fail(format!(
                    "the log starts at {first}, after a gap from the snapshot at {after}: damaged"
                )));
            }
            if last >= from {
                self.engine
                    .fetch_entries_to::<RaftEntries>(LOG, from, last + 1, None, &mut entries)
                    .map_err(|e| self.fail(format!("unreadable log entries: {e}")))?;
            }
        }
        Ok(Some(Restored {
            node: identity.node,
            snapshot,
            entries,
            hard_state,
        }))
    }

    /// Forgets every Raft record and starts over as node `id` (a fresh node, or one that
    /// rejoins under a new id). Synced: the identity is the first thing a restart reads.
    pub fn reset(&self, id: u64) -> Result<(), DiskError> {
        // One batch: a crash leaves either the old records or the new identity, never neither.
        let mut batch = LogBatch::default();
        batch.add_command(LOG, Command::Clean);
        batch.add_command(META, Command::Clean);
        let identity = Identity {
            format: FORMAT,
            node: id,
        };
        let bytes = serde_json::to_vec(&identity).map_err(|e| self.fail(e.to_string()))?;
        batch
            .put(META, IDENTITY.to_vec(), bytes)
            .map_err(|e| self.fail(e.to_string()))?;
        self.write(&mut batch, true)
    }

    fn write(&self, batch: &mut LogBatch, sync: bool) -> Result<(), DiskError> {
        self.engine
            .write(batch, sync)
            .map(|_| ())
            .map_err(|e| self.fail(format!("write failed: {e}")))
    }

    fn with_pending<T>(
        &self,
        f: impl FnOnce(&mut LogBatch) -> raft_engine::Result<T>,
    ) -> Result<T, DiskError> {
        let mut batch = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut batch).map_err(|e| self.fail(e.to_string()))
    }

    /// Queues entries for the next `flush` (raft-engine drops any later ones they replace).
    pub fn append(&self, entries: &[Entry]) -> Result<(), DiskError> {
        self.with_pending(|b| b.add_entries::<RaftEntries>(LOG, entries))
    }

    pub fn set_hard_state(&self, hs: &HardState) -> Result<(), DiskError> {
        self.with_pending(|b| b.put_message(META, HARD_STATE.to_vec(), hs))
    }

    /// A snapshot from the leader replaces the whole log: written and synced at once.
    pub fn install(&self, snap: &Snapshot, hs: &HardState) -> Result<(), DiskError> {
        let mut batch = LogBatch::default();
        batch.add_command(LOG, Command::Clean);
        batch
            .put_message(META, SNAPSHOT.to_vec(), snap)
            .and_then(|()| batch.put_message(META, HARD_STATE.to_vec(), hs))
            .map_err(|e| self.fail(e.to_string()))?;
        self.write(&mut batch, true)
    }

    /// Keeps `snap` as the restart point and drops the entries before its index.
    pub fn compact(&self, snap: &Snapshot) -> Result<(), DiskError> {
        let mut batch = LogBatch::default();
        batch
            .put_message(META, SNAPSHOT.to_vec(), snap)
            .map_err(|e| self.fail(e.to_string()))?;
        if self.engine.first_index(LOG).is_some() {
            batch.add_command(
                LOG,
                Command::Compact {
                    index: snap.get_metadata().index,
                },
            );
        }
        self.write(&mut batch, true)?;
        // Frees the files that hold nothing live any more (rare: once per compaction).
        if let Err(e) = self.engine.purge_expired_files() {
            log::warn!(
                "storage: purging old log files in {} failed: {e}",
                self.path.display()
            );
        }
        Ok(())
    }

    /// Writes what was queued since the last flush; with `sync`, fsyncs before returning.
    /// One call per Ready: every entry and vote of that Ready shares one fsync.
    pub fn flush(&self, sync: bool) -> Result<(), DiskError> {
        let mut batch =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        self.write(&mut batch, sync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("cmd {index}").into_bytes().into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_fresh_directory_restores_nothing_and_a_reset_one_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, restored) = Disk::open(dir.path()).unwrap();
        assert!(restored.is_none());
        disk.reset(42).unwrap();
        drop(disk);
        let (_, restored) = Disk::open(dir.path()).unwrap();
        let r = restored.expect("identity");
        assert_eq!(r.node, 42);
        assert!(r.snapshot.is_none() && r.entries.is_empty());
    }

    #[test]
    fn entries_hard_state_and_compaction_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, _) = Disk::open(dir.path()).unwrap();
        disk.reset(7).unwrap();
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 1;
        snap.mut_metadata().term = 1;
        snap.data = b"state at 1".to_vec().into();
        disk.install(&snap, &HardState::default()).unwrap();
        disk.append(&(2..=6).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        // A new leader overwrites 5 and 6.
        disk.append(&[entry(5, 2), entry(6, 2), entry(7, 2)])
            .unwrap();
        let hs = HardState {
            term: 2,
            vote: 7,
            commit: 6,
            ..Default::default()
        };
        disk.set_hard_state(&hs).unwrap();
        disk.flush(true).unwrap();
        let mut later = snap.clone();
        later.mut_metadata().index = 4;
        later.data = b"state at 4".to_vec().into();
        disk.compact(&later).unwrap();
        drop(disk);

        let (_, restored) = Disk::open(dir.path()).unwrap();
        let r = restored.unwrap();
        assert_eq!(r.node, 7);
        assert_eq!(r.snapshot.unwrap().data.as_ref(), b"state at 4");
        let got: Vec<(u64, u64)> = r.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(got, vec![(5, 2), (6, 2), (7, 2)]);
        assert_eq!(
            (r.hard_state.term, r.hard_state.vote, r.hard_state.commit),
            (2, 7, 6)
        );
    }

    #[test]
    fn a_snapshot_from_the_leader_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, _) = Disk::open(dir.path()).unwrap();
        disk.reset(1).unwrap();
        disk.append(&(1..=3).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        disk.flush(true).unwrap();
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 10;
        snap.mut_metadata().term = 3;
        disk.install(&snap, &HardState::default()).unwrap();
        disk.append(&[entry(11, 3)]).unwrap();
        disk.flush(true).unwrap();
        drop(disk);
        let (_, restored) = Disk::open(dir.path()).unwrap();
        let r = restored.unwrap();
        assert_eq!(r.snapshot.unwrap().get_metadata().index, 10);
        assert_eq!(
            r.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![11]
        );
    }

    #[test]
    fn a_foreign_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(SUBDIR)).unwrap();
        std::fs::write(dir.path().join(SUBDIR).join("notes.txt"), "mine").unwrap();
        let err = Disk::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("notes.txt") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_reset_forgets_the_old_log_and_keeps_only_the_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, _) = Disk::open(dir.path()).unwrap();
        disk.reset(1).unwrap();
        disk.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        disk.flush(true).unwrap();
        disk.reset(2).unwrap();
        drop(disk);
        let r = Disk::open(dir.path()).unwrap().1.unwrap();
        assert_eq!(r.node, 2);
        assert!(r.entries.is_empty() && r.snapshot.is_none());
    }

    #[test]
    fn a_truncated_log_file_is_refused_not_started_empty_over() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, _) = Disk::open(dir.path()).unwrap();
        disk.reset(9).unwrap();
        drop(disk);
        let raft = dir.path().join(SUBDIR);
        for f in std::fs::read_dir(&raft).unwrap().flatten() {
            if f.file_name().to_string_lossy().ends_with(".raftlog") {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(f.path())
                    .unwrap()
                    .set_len(5)
                    .unwrap();
            }
        }
        for _ in 0..2 {
            // Refused again on the next start too (raft-engine emptied the file the first time).
            let err = Disk::open(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("no identity record") && err.contains(&raft.display().to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn a_second_node_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_first, _) = Disk::open(dir.path()).unwrap();
        let err = Disk::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("WRS_DATA_DIR"), "{err}");
    }
}
