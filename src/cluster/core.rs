//! The Raft core: raft-rs, the log storage and the replicated `ClusterState`, driven by plain
//! method calls (`tick`, `step`, `propose`, ...) and answering with data (`Output`: messages to
//! send, results of this node's proposals, changes to mirror). No actors, sockets or clocks —
//! so `harness.rs` can run whole clusters of cores in a simulated network, and the actor in
//! `node.rs` only moves `Output` to the network and the registry.
//!
//! The leader also runs the failure detector here (`detect_failures`): time is the core's tick
//! count, what it hears is what `step` accepted, and its verdicts go through the log like any
//! write — so every node moves a dead member's channels at the same point of the log, and the
//! harness can test all of it with simulated time.
//!
//! The `Ready` handling follows the order raft-rs documents: read states, snapshot, entries,
//! hard state, committed entries, advance, light-ready commit and entries, advance_apply.

use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType,
    Message as RaftMessage, Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use std::collections::HashMap;

use std::sync::Arc;

use super::state::{Applied, ClusterState, Command};
use super::storage::disk::{Disk, Restored};
use super::storage::WrsStorage;
use super::validate::{self, Known, Rejected};
use crate::model::{ChannelRecord, DeleteCause, Member};

/// Raft timing (in ticks) and the state machine's limits.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    pub heartbeat_ticks: usize,
    pub min_election_ticks: usize,
    pub max_election_ticks: usize,
    /// Applied entries between log compactions.
    pub snapshot_length: u64,
    pub max_channels: usize,
    /// A member the leader has not heard from for this many ticks is marked down.
    pub down_after_ticks: u64,
    /// A member down for this many ticks is removed (`None` = never).
    pub remove_after_ticks: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("the cluster has no leader right now")]
    NoLeader,
    #[error("the proposal was not committed in time")]
    Timeout,
    #[error("the proposal was dropped (leader change or a pending membership change)")]
    Dropped,
    #[error("another membership change is in progress; retry")]
    Busy,
    #[error("this node is not the leader; the leader is {0}")]
    NotLeader(String),
    #[error("no member with id {0}")]
    UnknownMember(u64),
    #[error("this node is not part of a cluster yet")]
    NotStarted,
    #[error("too many writes are waiting for the cluster; retry")]
    Overloaded,
}

/// A change of the replicated state the rest of the node must follow.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Created(ChannelRecord),
    Deleted {
        id: String,
        cause: DeleteCause,
    },
    Reset(Vec<String>),
    /// The whole state was replaced (bootstrap, reset, snapshot).
    Installed,
    /// The member list changed.
    Members,
    /// This member was removed: its links can go.
    Removed(u64),
    /// The leader's failure detector committed a member's new state (`true` = down).
    Marked {
        id: u64,
        down: bool,
    },
}

/// What driving the core produced since the last `advance`.
#[derive(Debug, Default)]
pub struct Output {
    /// Raft messages for other nodes, in order.
    pub messages: Vec<RaftMessage>,
    /// Results of this node's proposals, by the sequence number `propose` returned.
    pub results: Vec<(u64, Result<Applied, ProposeError>)>,
    pub changes: Vec<Change>,
    /// Reads the leader confirmed: (request context, index to apply before answering).
    pub reads: Vec<(Vec<u8>, u64)>,
}

pub struct Core {
    me: Member,
    raw: RawNode<WrsStorage>,
    storage: WrsStorage,
    state: ClusterState,
    conf_state: ConfState,
    applied: u64,
    started: bool,
    seq: u64,
    settings: CoreSettings,
    logger: slog::Logger,
    out: Output,
    /// Ticks since this core was created: the failure detector's clock.
    now: u64,
    /// When each member was last heard from (a message `step` accepted), in ticks.
    heard: HashMap<u64, u64>,
    /// The tick this node last became leader: nobody counts as silent for longer than that.
    leader_since: Option<u64>,
    /// Up/down verdicts proposed and not yet applied, with the tick they were proposed at.
    marking: HashMap<u64, u64>,
    /// This node applied its own removal from the configuration.
    removed: bool,
    /// The data directory (`WRS_DATA_DIR`), handed to every storage this core starts over.
    disk: Option<Arc<Disk>>,
    /// When this node last proposed its new addresses (`announce_address`).
    announced: Option<u64>,
}

/// A down member whose messages arrived within this many heartbeats is up again.
const UP_WITHIN_HEARTBEATS: u64 = 2;
/// A verdict not applied this many ticks after its proposal is proposed again.
const REMARK_AFTER_TICKS: u64 = 20;

fn raft_config(id: u64, s: &CoreSettings) -> raft::Config {
    raft::Config {
        id,
        heartbeat_tick: s.heartbeat_ticks,
        election_tick: s.min_election_ticks,
        min_election_tick: s.min_election_ticks,
        max_election_tick: s.max_election_ticks,
        check_quorum: true,
        pre_vote: true,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        ..Default::default()
    }
}

fn raw_node(
    id: u64,
    s: &CoreSettings,
    storage: &WrsStorage,
    logger: &slog::Logger,
) -> RawNode<WrsStorage> {
    // The configuration is built here from validated settings; raft-rs only refuses id 0 or
    // an election timeout not above the heartbeat, which `server::raft_settings` rules out.
    RawNode::new(&raft_config(id, s), storage.clone(), logger).expect("a valid raft configuration")
}

impl Core {
    /// A core that is not part of any cluster yet (it waits to be added, or bootstraps).
    /// With a data directory, that directory now holds this identity and nothing else.
    pub fn new(
        me: Member,
        settings: CoreSettings,
        disk: Option<Arc<Disk>>,
        logger: slog::Logger,
    ) -> Core {
        let storage = WrsStorage::empty(me.id, disk.clone());
        Core::with_storage(
            me,
            settings,
            disk,
            storage,
            ClusterState::default(),
            ConfState::default(),
            logger,
        )
    }

    /// A core restarted on its data directory, as the member it was: the state machine is
    /// the snapshot's state, and raft-rs hands out the committed entries after it again.
    pub fn restore(
        me: Member,
        settings: CoreSettings,
        restored: Restored,
        disk: Arc<Disk>,
        logger: slog::Logger,
    ) -> Result<Core, String> {
        let snap = restored.snapshot.clone().unwrap_or_default();
        let state = ClusterState::from_bytes(&snap.data)
            .map_err(|e| format!("{}: unreadable snapshot state: {e}", disk.path().display()))?;
        let storage = WrsStorage::restore(restored, Arc::clone(&disk))
            .map_err(|e| format!("{}: inconsistent Raft log: {e}", disk.path().display()))?;
        let conf_state = snap.get_metadata().get_conf_state().clone();
        let alone = conf_state.voters == [me.id];
        let mut core =
            Core::with_storage(me, settings, Some(disk), storage, state, conf_state, logger);
        core.applied = snap.get_metadata().index;
        core.started = true;
        core.out.changes.push(Change::Installed);
        log::info!(
            "storage: restored node {} at index {} ({} channels, {} members, {} log entries after it)",
            core.me.id,
            core.applied,
            core.state.channels.len(),
            core.state.members.len(),
            core.raw.raft.raft_log.last_index() - core.applied,
        );
        if alone {
            // The only voter need not wait an election timeout to lead again.
            let _ = core.raw.campaign();
        }
        Ok(core)
    }

    fn with_storage(
        me: Member,
        settings: CoreSettings,
        disk: Option<Arc<Disk>>,
        storage: WrsStorage,
        state: ClusterState,
        conf_state: ConfState,
        logger: slog::Logger,
    ) -> Core {
        Core {
            raw: raw_node(me.id, &settings, &storage, &logger),
            me,
            storage,
            state,
            conf_state,
            applied: 0,
            started: false,
            seq: 0,
            settings,
            logger,
            out: Output::default(),
            now: 0,
            heard: HashMap::new(),
            leader_since: None,
            marking: HashMap::new(),
            removed: false,
            disk,
            announced: None,
        }
    }

    pub fn id(&self) -> u64 {
        self.me.id
    }

    pub fn started(&self) -> bool {
        self.started
    }

    pub fn leader(&self) -> Option<u64> {
        let l = self.raw.raft.leader_id;
        (self.started && l != raft::INVALID_ID).then_some(l)
    }

    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn commit(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    pub fn is_learner(&self, id: u64) -> bool {
        self.conf_state.learners.contains(&id)
    }

    pub fn has_pending_conf(&self) -> bool {
        self.raw.raft.has_pending_conf()
    }

    /// Ticks since `id` was last heard from (0 for this node; `None`: never, by this node).
    pub fn heard_ago(&self, id: u64) -> Option<u64> {
        if id == self.me.id {
            return Some(0);
        }
        self.heard.get(&id).map(|t| self.now.saturating_sub(*t))
    }

    /// The members that own channels: voters that are up. A learner owns nothing until it
    /// is promoted (it has not applied the channels yet); every node computes this at the
    /// same point of the log, so all agree.
    pub fn owners(&self) -> std::collections::BTreeSet<u64> {
        let up = self.state.up_members();
        let voters: std::collections::BTreeSet<u64> = up
            .iter()
            .copied()
            .filter(|id| !self.conf_state.learners.contains(id))
            .collect();
        if voters.is_empty() {
            up
        } else {
            voters
        }
    }

    pub fn is_down(&self, id: u64) -> bool {
        self.state.down.contains(&id)
    }

    /// Whether this node applied its own removal (it must rejoin as a new member).
    pub fn removed(&self) -> bool {
        self.removed
    }

    fn reset(&mut self, storage: WrsStorage, state: ClusterState, applied: u64) {
        self.raw = raw_node(self.me.id, &self.settings, &storage, &self.logger);
        self.storage = storage;
        self.conf_state = self.raw.raft.prs().conf().to_conf_state();
        self.applied = applied;
        self.state = state;
        self.heard.clear();
        self.marking.clear();
        self.leader_since = None;
        self.removed = false;
        self.out.changes.push(Change::Installed);
    }

    /// Starts a new cluster with this node as its only voter, and campaigns.
    pub fn bootstrap(&mut self) -> Result<(), String> {
        if self.started {
            return Ok(());
        }
        let mut state = ClusterState {
            cluster: super::random_node_id(),
            ..ClusterState::default()
        };
        state.members.insert(self.me.id, self.me.clone());
        let storage = WrsStorage::bootstrap(self.me.id, state.to_bytes(), self.disk.clone())
            .map_err(|e| e.to_string())?;
        self.reset(storage, state, 1);
        self.started = true;
        let _ = self.raw.campaign();
        Ok(())
    }

    /// Forgets the current cluster; waits, empty, to be added to another one.
    pub fn reset_to_join(&mut self) {
        let storage = WrsStorage::empty(self.me.id, self.disk.clone());
        self.reset(storage, ClusterState::default(), 0);
        self.started = false;
    }

    pub fn tick(&mut self) {
        self.now += 1;
        self.raw.tick();
        self.announce_address();
        if self.raw.raft.state == StateRole::Leader {
            self.leader_since.get_or_insert(self.now);
            self.promote_learners();
            self.detect_failures();
        } else {
            self.leader_since = None;
            self.marking.clear();
        }
    }

    /// A member restarted on its data directory may listen elsewhere now (a new port, a new
    /// pod IP): it tells the cluster, through the log, until the state shows its addresses.
    fn announce_address(&mut self) {
        let stale = self
            .state
            .members
            .get(&self.me.id)
            .is_some_and(|m| *m != self.me);
        if !stale || self.leader().is_none() {
            return;
        }
        let recent = self
            .announced
            .is_some_and(|t| self.now.saturating_sub(t) < REMARK_AFTER_TICKS);
        if recent {
            return;
        }
        if self.propose(&Command::MemberMoved(self.me.clone())).is_ok() {
            log::info!(
                "cluster: announcing this node's new addresses {} / {}",
                self.me.api,
                self.me.peer
            );
            self.announced = Some(self.now);
        }
    }

    /// Leader duty, once per tick: mark members down that were silent for `down_after_ticks`,
    /// up again those that answer, and remove those down for `remove_after_ticks`. Silence is
    /// counted from this node's own election at the earliest, so a new leader first gives
    /// everyone a full period (it cannot know what its predecessor heard).
    fn detect_failures(&mut self) {
        if !self.started {
            return;
        }
        let Some(since) = self.leader_since else {
            return;
        };
        let up_within = UP_WITHIN_HEARTBEATS * self.settings.heartbeat_ticks as u64 + 1;
        let mut verdicts = Vec::new();
        let mut removal = None;
        for &id in self.state.members.keys() {
            if id == self.me.id {
                continue;
            }
            let heard = self.heard.get(&id).copied();
            let last = heard.unwrap_or(since).max(since);
            let silent = self.now.saturating_sub(last);
            let down = self.state.down.contains(&id);
            // Up again needs a message from it, not just a young leadership.
            let answers = heard.is_some_and(|t| self.now.saturating_sub(t) < up_within);
            if !down && silent >= self.settings.down_after_ticks {
                verdicts.push(Command::MemberDown(id));
            } else if down && answers {
                verdicts.push(Command::MemberUp(id));
            } else if down
                && removal.is_none()
                && self
                    .settings
                    .remove_after_ticks
                    .is_some_and(|r| silent >= self.settings.down_after_ticks + r)
            {
                removal = Some(id);
            }
        }
        for cmd in verdicts {
            let (Command::MemberDown(id) | Command::MemberUp(id)) = cmd else {
                continue;
            };
            let recent = self
                .marking
                .get(&id)
                .is_some_and(|t| self.now.saturating_sub(*t) < REMARK_AFTER_TICKS);
            if recent {
                continue;
            }
            let verb = if matches!(cmd, Command::MemberDown(_)) {
                "down"
            } else {
                "up"
            };
            match self.propose(&cmd) {
                Ok(_) => {
                    log::info!("cluster: marking node {id} {verb}");
                    self.marking.insert(id, self.now);
                }
                Err(e) => log::debug!("cluster: marking node {id} {verb} failed: {e}"),
            }
        }
        if let Some(id) = removal {
            if !self.raw.raft.has_pending_conf() {
                log::info!(
                    "cluster: removing node {id}: down for longer than WRS_NODE_REMOVE_AFTER"
                );
                let _ = self.propose_change(ConfChangeType::RemoveNode, id, None);
            }
        }
    }

    /// One message from the peer link opened by node `link_from`, validated before raft-rs
    /// sees it (`validate.rs`).
    pub fn step(&mut self, link_from: u64, m: RaftMessage) -> Result<(), Rejected> {
        let known = Known {
            me: self.me.id,
            link_from,
            last_index: self.raw.raft.raft_log.last_index(),
            started: self.started,
            is_member: |id| self.raw.raft.prs().get(id).is_some(),
        };
        validate::check(&m, &known)?;
        self.heard.insert(m.from, self.now);
        if let Err(e) = self.raw.step(m) {
            log::debug!("raft: step failed: {e}");
        }
        Ok(())
    }

    fn next_context(&mut self) -> (u64, Vec<u8>) {
        self.seq += 1;
        let mut ctx = self.me.id.to_le_bytes().to_vec();
        ctx.extend_from_slice(&self.seq.to_le_bytes());
        (self.seq, ctx)
    }

    /// The sequence number of an entry this node proposed, if it is one.
    fn own_seq(&self, context: &[u8]) -> Option<u64> {
        if context.len() != 16 || context[..8] != self.me.id.to_le_bytes() {
            return None;
        }
        Some(u64::from_le_bytes(context[8..16].try_into().ok()?))
    }

    /// Proposes a command; its result arrives in `Output::results` under the returned number.
    pub fn propose(&mut self, cmd: &Command) -> Result<u64, ProposeError> {
        if !self.started {
            return Err(ProposeError::NotStarted);
        }
        if self.leader().is_none() {
            return Err(ProposeError::NoLeader);
        }
        let data = serde_json::to_vec(cmd).map_err(|_| ProposeError::Dropped)?;
        let (seq, context) = self.next_context();
        self.raw
            .propose(context, data)
            .map_err(|_| ProposeError::NoLeader)?;
        Ok(seq)
    }

    /// Proposes one membership change. raft-rs allows one at a time and silently turns a
    /// second one into an empty entry, whose proposer would wait in vain: refused at once.
    pub fn propose_change(
        &mut self,
        kind: ConfChangeType,
        node: u64,
        member: Option<&Member>,
    ) -> Result<u64, ProposeError> {
        if self.raw.raft.state == StateRole::Leader && self.raw.raft.has_pending_conf() {
            return Err(ProposeError::Busy);
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(kind);
        cc.node_id = node;
        if let Some(m) = member {
            cc.context = serde_json::to_vec(m).unwrap_or_default().into();
        }
        let (seq, context) = self.next_context();
        self.raw
            .propose_conf_change(context, cc)
            .map_err(|_| ProposeError::Dropped)?;
        Ok(seq)
    }

    /// Asks for a linearizable read; the confirmation arrives in `Output::reads` under the
    /// returned context.
    pub fn read_index(&mut self) -> Option<Vec<u8>> {
        if !self.started || self.leader().is_none() {
            return None;
        }
        let (_, context) = self.next_context();
        self.raw.read_index(context.clone());
        Some(context)
    }

    pub fn report_unreachable(&mut self, id: u64) {
        self.raw.report_unreachable(id);
    }

    pub fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        self.raw.report_snapshot(id, status);
    }

    /// Leader duty: promote the first learner whose log caught up with the commit index.
    fn promote_learners(&mut self) {
        if self.raw.raft.state != StateRole::Leader || self.raw.raft.has_pending_conf() {
            return;
        }
        let committed = self.raw.raft.raft_log.committed;
        let ready = self.conf_state.learners.iter().copied().find(|id| {
            self.raw
                .raft
                .prs()
                .get(*id)
                .is_some_and(|p| p.matched + 1 >= committed)
        });
        if let Some(member) = ready.and_then(|id| self.state.members.get(&id).cloned()) {
            log::info!("cluster: promoting node {} to voter", member.id);
            let _ = self.propose_change(ConfChangeType::AddNode, member.id, Some(&member));
        }
    }

    /// Handles what raft-rs has ready and returns everything produced since the last call.
    pub fn advance(&mut self) -> Output {
        if self.raw.has_ready() {
            self.handle_ready();
        }
        std::mem::take(&mut self.out)
    }

    fn handle_ready(&mut self) {
        let mut ready = self.raw.ready();
        for rs in ready.take_read_states() {
            self.out.reads.push((rs.request_ctx, rs.index));
        }
        self.out.messages.extend(ready.take_messages());
        if *ready.snapshot() != Snapshot::default() {
            let snap = ready.snapshot().clone();
            self.install_snapshot(snap);
        }
        if !ready.entries().is_empty() {
            if let Err(e) = self.storage.append(ready.entries()) {
                log::error!("raft: appending entries failed: {e}");
                return;
            }
        }
        if let Some(hs) = ready.hs() {
            self.storage.set_hardstate(hs.clone());
        }
        // Durable before anything depends on it: the votes and acks below go out, and
        // raft-rs counts this node's own copy toward a commit, only after this fsync — one
        // for everything this Ready holds, however many proposals that is.
        self.storage.flush(true);
        self.out.messages.extend(ready.take_persisted_messages());
        let committed = ready.take_committed_entries();
        self.apply(committed);
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.storage.set_commit(commit);
            // The commit index may lag on disk (the leader re-sends it); no fsync for it.
            self.storage.flush(false);
        }
        self.out.messages.extend(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(committed);
        self.raw.advance_apply();
        self.maybe_compact();
    }

    fn install_snapshot(&mut self, snap: Snapshot) {
        let meta = snap.get_metadata().clone();
        match ClusterState::from_bytes(&snap.data) {
            Ok(state) => {
                if let Err(e) = self.storage.apply_snapshot(snap) {
                    log::error!("raft: installing snapshot failed: {e}");
                    return;
                }
                log::info!(
                    "raft: installed snapshot at index {} ({} channels, {} members)",
                    meta.index,
                    state.channels.len(),
                    state.members.len()
                );
                self.conf_state = meta.get_conf_state().clone();
                self.applied = meta.index;
                self.state = state;
                self.out.changes.push(Change::Installed);
                self.started = true;
            }
            Err(e) => log::error!("raft: snapshot data is unreadable: {e}"),
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            self.applied = entry.index;
            // Dispatch on the type first: conf changes (even empty V2 ones) must be applied.
            match entry.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(&entry),
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    if let Err(e) = cc.merge_from_bytes(&entry.data) {
                        log::error!("raft: unreadable conf change at {}: {e}", entry.index);
                        continue;
                    }
                    self.apply_conf_change(&entry, into_v2(cc));
                }
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    if let Err(e) = cc.merge_from_bytes(&entry.data) {
                        log::error!("raft: unreadable conf change at {}: {e}", entry.index);
                        continue;
                    }
                    self.apply_conf_change(&entry, cc);
                }
            }
        }
    }

    fn result(&mut self, context: &[u8], result: Result<Applied, ProposeError>) {
        if let Some(seq) = self.own_seq(context) {
            self.out.results.push((seq, result));
        }
    }

    fn apply_normal(&mut self, entry: &Entry) {
        if entry.data.is_empty() {
            // A new leader's empty entry, or a proposal raft replaced with an empty one.
            self.result(&entry.context, Err(ProposeError::Dropped));
            return;
        }
        let cmd: Command = match serde_json::from_slice(&entry.data) {
            Ok(cmd) => cmd,
            Err(e) => {
                log::error!("raft: unreadable command at {}: {e}", entry.index);
                return;
            }
        };
        let applied = self.state.apply(cmd, self.settings.max_channels);
        match &applied {
            Applied::Created(record) => self.out.changes.push(Change::Created(record.clone())),
            Applied::Deleted { id, cause } => self.out.changes.push(Change::Deleted {
                id: id.clone(),
                cause: *cause,
            }),
            Applied::Reset(ids) => self.out.changes.push(Change::Reset(ids.clone())),
            Applied::Moved(id) => {
                log::info!(
                    "cluster: node {id} moved to {}",
                    self.state.members.get(id).map_or("?", |m| m.api.as_str())
                );
                self.out.changes.push(Change::Members);
            }
            Applied::Marked { id, down } => {
                self.marking.remove(id);
                log::info!(
                    "cluster: node {id} is {}",
                    if *down { "down" } else { "up again" }
                );
                self.out.changes.push(Change::Marked {
                    id: *id,
                    down: *down,
                });
                self.out.changes.push(Change::Members);
            }
            _ => {}
        }
        self.result(&entry.context, Ok(applied));
    }

    fn apply_conf_change(&mut self, entry: &Entry, cc: ConfChangeV2) {
        match self.raw.apply_conf_change(&cc) {
            Ok(cs) => {
                self.storage.set_conf_state(cs.clone());
                self.conf_state = cs;
            }
            Err(e) => {
                log::error!("raft: conf change at {} failed: {e}", entry.index);
                self.result(&entry.context, Err(ProposeError::Dropped));
                return;
            }
        }
        for change in cc.get_changes() {
            match change.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let Ok(member) = serde_json::from_slice::<Member>(&cc.context) else {
                        continue;
                    };
                    if member.id == change.node_id {
                        // A new member gets a full period before it can count as silent.
                        self.heard.entry(member.id).or_insert(self.now);
                        let voter = change.get_change_type() == ConfChangeType::AddNode;
                        log::info!(
                            "cluster: node {} ({}) is now a {}",
                            member.id,
                            member.api,
                            if voter { "voter" } else { "learner" }
                        );
                        self.state.members.insert(member.id, member);
                    }
                }
                ConfChangeType::RemoveNode => {
                    let id = change.node_id;
                    log::info!("cluster: node {id} removed");
                    self.state.remove_member(id);
                    self.heard.remove(&id);
                    self.marking.remove(&id);
                    self.out.changes.push(Change::Removed(id));
                    if id == self.me.id {
                        log::warn!("cluster: this node was removed from the cluster");
                        self.removed = true;
                    }
                }
            }
        }
        self.out.changes.push(Change::Members);
        self.result(&entry.context, Ok(Applied::NotFound));
    }

    fn maybe_compact(&mut self) {
        if self.storage.take_snapshot_request() {
            let data = self.state.to_bytes();
            match self
                .storage
                .capture(self.applied, self.conf_state.clone(), data)
            {
                Ok(()) => log::info!("raft: captured a snapshot at index {}", self.applied),
                Err(e) => log::warn!("raft: snapshot at {} failed: {e}", self.applied),
            }
        }
        if self.applied < self.storage.snapshot_index() + self.settings.snapshot_length {
            return;
        }
        let data = self.state.to_bytes();
        match self
            .storage
            .compact(self.applied, self.conf_state.clone(), data)
        {
            Ok(()) => log::info!("raft: compacted the log up to index {}", self.applied),
            Err(e) => log::warn!("raft: compaction at {} failed: {e}", self.applied),
        }
    }

    /// Whether `id` is a voter or learner of the configuration this node knows.
    pub fn knows(&self, id: u64) -> bool {
        self.raw.raft.prs().get(id).is_some()
    }
}

/// raft-rs applies V2 conf changes; a V1 change (what `propose_conf_change` with a
/// `ConfChange` writes) becomes a V2 with one change and the same context.
fn into_v2(cc: ConfChange) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(cc.get_change_type());
    single.node_id = cc.node_id;
    let mut v2 = ConfChangeV2::default();
    v2.mut_changes().push(single);
    v2.context = cc.context;
    v2
}
