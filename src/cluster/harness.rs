//! A simulated network for the Raft core (test only): whole clusters of `Core`s in one thread,
//! messages delivered from a queue, time as explicit ticks, links cut and healed at will. No
//! sockets, no clocks, no actors — every test here is deterministic and takes milliseconds.
//! In the style of raft-rs' own `harness`: what the tests drive is exactly the core `node.rs`
//! runs, validation included.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use raft::prelude::{ConfChangeType, Message, MessageType};
use raft::StateRole;

use super::core::{Core, CoreSettings, ProposeError};
use super::state::{Applied, Command};
use super::storage::disk::Disk;
use super::validate::Rejected;
use crate::model::{ChannelRecord, ChannelSpec, Member, Pattern};

fn member(id: u64) -> Member {
    Member {
        id,
        api: format!("node{id}:8080"),
        peer: format!("node{id}:4000"),
    }
}

fn settings(snapshot_length: u64) -> CoreSettings {
    CoreSettings {
        heartbeat_ticks: 2,
        min_election_ticks: 10,
        max_election_ticks: 20,
        snapshot_length,
        max_channels: 1000,
        down_after_ticks: 30,
        remove_after_ticks: None,
    }
}

fn create(id: &str) -> Command {
    Command::CreateChannel(ChannelRecord {
        id: id.to_owned(),
        spec: ChannelSpec {
            pattern: Pattern::PubSub,
            client_limit: -1,
            timeout: -1,
            include_sender: false,
            history: 0,
        },
        token_hash: [0; 32],
        created_at_ms: 0,
    })
}

/// Cores wired by a message queue. `cut` holds directed links that lose every message.
struct Net {
    cores: BTreeMap<u64, Core>,
    queue: VecDeque<Message>,
    cut: BTreeSet<(u64, u64)>,
    /// Results of proposals, per proposing node and sequence number.
    results: BTreeMap<(u64, u64), Result<Applied, ProposeError>>,
    /// Messages the receiving core refused, with why.
    rejected: Vec<(u64, Rejected)>,
    settings: CoreSettings,
    /// With `Net::durable`: each node's data directory, kept across `crash` and `restart`.
    dirs: Option<BTreeMap<u64, tempfile::TempDir>>,
}

impl Net {
    /// Node 1 bootstraps; nodes 2..=n are added one at a time, each as a learner the leader
    /// promotes once it has caught up.
    fn cluster(n: u64, snapshot_length: u64) -> Net {
        Net::cluster_with(n, settings(snapshot_length))
    }

    fn cluster_with(n: u64, settings: CoreSettings) -> Net {
        let mut net = Net {
            cores: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            results: BTreeMap::new(),
            rejected: Vec::new(),
            settings,
            dirs: None,
        };
        net.spawn(1);
        net.core(1).bootstrap().expect("bootstrap");
        net.settle();
        assert_eq!(net.leader(), Some(1));
        for id in 2..=n {
            net.add(id);
        }
        net
    }

    /// As `cluster`, every core on a data directory of its own (raft-engine in a tempdir).
    fn durable(n: u64, snapshot_length: u64) -> Net {
        let mut net = Net {
            cores: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            results: BTreeMap::new(),
            rejected: Vec::new(),
            settings: settings(snapshot_length),
            dirs: Some(BTreeMap::new()),
        };
        net.spawn(1);
        net.core(1).bootstrap().expect("bootstrap");
        net.settle();
        for id in 2..=n {
            net.add(id);
        }
        net
    }

    /// Starts core `id`: on its data directory (restored, if it has one) or in memory.
    fn spawn(&mut self, id: u64) {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let settings = self.settings.clone();
        let core = match self.dirs.as_mut() {
            None => Core::new(member(id), settings, None, logger),
            Some(dirs) => {
                let dir = dirs
                    .entry(id)
                    .or_insert_with(|| tempfile::tempdir().expect("tempdir"));
                let (disk, restored) = Disk::open(dir.path()).expect("open the data directory");
                let disk = Arc::new(disk);
                match restored {
                    Some(r) if r.snapshot.is_some() => {
                        Core::restore(member(id), settings, r, disk, logger).expect("restore")
                    }
                    _ => Core::new(member(id), settings, Some(disk), logger),
                }
            }
        };
        self.cores.insert(id, core);
    }

    /// Core `id` stops at once (a `kill -9`): what it wrote stays in its directory, what is in
    /// flight to or from it is lost.
    fn crash(&mut self, id: u64) {
        self.cores.remove(&id);
        self.queue.retain(|m| m.to != id && m.from != id);
    }

    fn core(&mut self, id: u64) -> &mut Core {
        self.cores.get_mut(&id).expect("a core with that id")
    }

    /// Adds node `id` through the leader and ticks until it is a voter everywhere.
    fn add(&mut self, id: u64) {
        self.spawn(id);
        let leader = self.leader().expect("a leader to add through");
        let m = member(id);
        self.core(leader)
            .propose_change(ConfChangeType::AddLearnerNode, id, Some(&m))
            .expect("propose add");
        let promoted = self.tick_until(200, |net| {
            net.cores
                .values()
                .all(|c| c.state().members.contains_key(&id) && !c.is_learner(id) && c.started())
        });
        assert!(promoted, "node {id} was not added and promoted");
    }

    /// Delivers queued messages (and what they cause) until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for (&id, core) in self.cores.iter_mut() {
                let out = core.advance();
                moved |= !out.messages.is_empty() || !out.results.is_empty();
                self.queue.extend(out.messages);
                for (seq, r) in out.results {
                    self.results.insert((id, seq), r);
                }
            }
            while let Some(m) = self.queue.pop_front() {
                moved = true;
                if self.cut.contains(&(m.from, m.to)) {
                    continue;
                }
                let (from, to) = (m.from, m.to);
                if let Some(core) = self.cores.get_mut(&to) {
                    if let Err(why) = core.step(from, m) {
                        self.rejected.push((to, why));
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network did not settle");
    }

    fn tick(&mut self) {
        for core in self.cores.values_mut() {
            core.tick();
        }
        self.settle();
    }

    /// Ticks until `done` holds (true) or `limit` ticks passed (false).
    fn tick_until(&mut self, limit: usize, done: impl Fn(&Net) -> bool) -> bool {
        for _ in 0..limit {
            if done(self) {
                return true;
            }
            self.tick();
        }
        done(self)
    }

    /// The leader of the highest term that is reachable, if any.
    fn leader(&self) -> Option<u64> {
        self.cores
            .values()
            .filter(|c| c.role() == StateRole::Leader)
            .max_by_key(|c| c.term())
            .map(Core::id)
    }

    fn isolate(&mut self, id: u64) {
        for &other in self.cores.keys() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    /// Proposes a channel on `node` and returns the proposal's result after settling.
    fn propose(&mut self, node: u64, cmd: &Command) -> Option<Result<Applied, ProposeError>> {
        let seq = match self.core(node).propose(cmd) {
            Ok(seq) => seq,
            Err(e) => return Some(Err(e)),
        };
        self.settle();
        self.results.remove(&(node, seq))
    }

    fn channels(&self, node: u64) -> BTreeSet<String> {
        self.cores[&node].state().channels.keys().cloned().collect()
    }
}

fn heartbeat(from: u64, to: u64, term: u64, commit: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    m.term = term;
    m.commit = commit;
    m
}

#[test]
fn three_cores_agree_on_one_leader_and_every_write() {
    let mut net = Net::cluster(3, 1000);
    let leader = net.leader().expect("a leader");
    let result = net.propose(leader, &create("abc"));
    assert!(
        matches!(result, Some(Ok(Applied::Created(_)))),
        "{result:?}"
    );
    for id in 1..=3 {
        assert_eq!(
            net.channels(id),
            BTreeSet::from(["abc".to_string()]),
            "node {id}"
        );
        assert_eq!(net.cores[&id].leader(), Some(leader), "node {id}'s leader");
    }
}

#[test]
fn losing_the_leader_elects_another_that_takes_writes_and_the_old_one_follows_on_return() {
    let mut net = Net::cluster(3, 1000);
    let old = net.leader().expect("a leader");
    let old_term = net.cores[&old].term();
    net.isolate(old);
    let elected = net.tick_until(200, |net| {
        net.cores
            .values()
            .any(|c| c.id() != old && c.role() == StateRole::Leader)
    });
    assert!(elected, "no new leader among the two that remain");
    let new = net
        .cores
        .values()
        .find(|c| c.id() != old && c.role() == StateRole::Leader)
        .map(Core::id)
        .expect("new leader");
    assert!(net.cores[&new].term() > old_term);
    assert!(matches!(
        net.propose(new, &create("after")),
        Some(Ok(Applied::Created(_)))
    ));
    // The cut-off old leader cannot commit anything on its own.
    let stuck = net.core(old).propose(&create("lost")).ok();
    net.settle();
    assert!(!net.channels(new).contains("lost"));
    net.heal();
    let caught_up = net.tick_until(200, |net| net.channels(old).contains("after"));
    assert!(caught_up, "the old leader did not catch up");
    assert_eq!(net.cores[&old].role(), StateRole::Follower);
    if let Some(seq) = stuck {
        assert!(
            !matches!(net.results.get(&(old, seq)), Some(Ok(_))),
            "a write proposed in the minority was acknowledged"
        );
    }
    assert!(!net.channels(old).contains("lost"));
}

#[test]
fn membership_changes_one_at_a_time_and_a_second_one_meanwhile_is_refused() {
    let mut net = Net::cluster(2, 1000);
    net.spawn(3);
    net.spawn(4);
    let leader = net.leader().expect("a leader");
    let first = net
        .core(leader)
        .propose_change(ConfChangeType::AddLearnerNode, 3, Some(&member(3)))
        .expect("first change");
    // A second change while the first is pending is refused at once (raft-rs would turn it
    // into an empty entry and its proposer would wait in vain).
    let second =
        net.core(leader)
            .propose_change(ConfChangeType::AddLearnerNode, 4, Some(&member(4)));
    assert_eq!(second, Err(ProposeError::Busy));
    net.settle();
    assert!(matches!(net.results.get(&(leader, first)), Some(Ok(_))));
    let members = &net.cores[&leader].state().members;
    assert!(members.contains_key(&3) && !members.contains_key(&4));
    // Once the first is applied, the next one goes through.
    let next = net
        .core(leader)
        .propose_change(ConfChangeType::AddLearnerNode, 4, Some(&member(4)))
        .expect("the next change");
    net.settle();
    assert!(matches!(net.results.get(&(leader, next)), Some(Ok(_))));
    assert!(net.cores[&leader].state().members.contains_key(&4));
}

#[test]
fn a_learner_is_promoted_to_voter_once_it_has_caught_up() {
    let mut net = Net::cluster(2, 1000);
    for i in 0..20 {
        net.propose(1, &create(&format!("c{i}")));
    }
    net.spawn(3);
    net.core(1)
        .propose_change(ConfChangeType::AddLearnerNode, 3, Some(&member(3)))
        .expect("add learner");
    net.settle();
    let promoted = net.tick_until(100, |net| {
        net.cores.values().all(|c| !c.is_learner(3)) && net.channels(3).len() == 20
    });
    assert!(promoted, "node 3 was not promoted after catching up");
    assert!(net.cores[&1].state().members.contains_key(&3));
}

#[test]
fn a_node_added_after_compaction_catches_up_from_a_snapshot() {
    let mut net = Net::cluster(2, 5);
    for i in 0..30 {
        net.propose(1, &create(&format!("c{i}")));
    }
    net.add(3);
    assert_eq!(
        net.channels(3).len(),
        30,
        "the snapshot carried every channel"
    );
    assert_eq!(net.channels(3), net.channels(1));
}

#[test]
fn messages_from_a_removed_node_or_a_stranger_are_refused_before_raft() {
    let mut net = Net::cluster(3, 1000);
    let leader = net.leader().expect("a leader");
    let gone = if leader == 3 { 2 } else { 3 };
    net.core(leader)
        .propose_change(ConfChangeType::RemoveNode, gone, None)
        .expect("remove");
    let removed = net.tick_until(100, |net| {
        net.cores
            .iter()
            .filter(|(id, _)| **id != gone)
            .all(|(_, c)| !c.state().members.contains_key(&gone))
    });
    assert!(removed);
    let term = net.cores[&leader].term();
    let other = (1..=3)
        .find(|id| *id != leader && *id != gone)
        .expect("a follower");
    for (from, why) in [
        (gone, Rejected::UnknownSender),
        (99, Rejected::UnknownSender),
    ] {
        let m = heartbeat(from, other, term + 5, 0);
        assert_eq!(net.core(other).step(from, m), Err(why), "from {from}");
    }
    // Nothing changed: the follower still follows the same leader in the same term.
    assert_eq!(net.cores[&other].leader(), Some(leader));
    assert_eq!(net.cores[&other].term(), term);
}

#[test]
fn a_crafted_heartbeat_beyond_the_log_is_refused_and_the_follower_keeps_working() {
    let mut net = Net::cluster(3, 1000);
    let leader = net.leader().expect("a leader");
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let m = heartbeat(leader, follower, 1 << 40, 1 << 40);
    assert_eq!(
        net.core(follower).step(leader, m),
        Err(Rejected::CommitOutOfRange)
    );
    assert!(matches!(
        net.propose(leader, &create("still")),
        Some(Ok(Applied::Created(_)))
    ));
    assert!(net.channels(follower).contains("still"));
}

#[test]
fn a_minority_partition_cannot_commit_and_the_majority_can() {
    let mut net = Net::cluster(5, 1000);
    let leader = net.leader().expect("a leader");
    // Cut the leader and one follower off from the other three.
    let buddy = (1..=5).find(|id| *id != leader).expect("another node");
    let minority = [leader, buddy];
    for &a in &minority {
        for b in 1..=5 {
            if !minority.contains(&b) {
                net.cut.insert((a, b));
                net.cut.insert((b, a));
            }
        }
    }
    let lost = net.core(leader).propose(&create("minority")).ok();
    net.settle();
    let elected = net.tick_until(300, |net| {
        net.cores
            .values()
            .any(|c| !minority.contains(&c.id()) && c.role() == StateRole::Leader)
    });
    assert!(elected, "the majority did not elect a leader");
    let majority_leader = net
        .cores
        .values()
        .find(|c| !minority.contains(&c.id()) && c.role() == StateRole::Leader)
        .map(Core::id)
        .expect("leader");
    assert!(matches!(
        net.propose(majority_leader, &create("majority")),
        Some(Ok(Applied::Created(_)))
    ));
    net.heal();
    let converged = net.tick_until(300, |net| {
        (1..=5).all(|id| net.channels(id).contains("majority"))
    });
    assert!(converged);
    for id in 1..=5 {
        assert!(!net.channels(id).contains("minority"), "node {id}");
    }
    if let Some(seq) = lost {
        assert!(!matches!(net.results.get(&(leader, seq)), Some(Ok(_))));
    }
}

/// Harness settings with the failure detector's timing: down after 30 silent ticks (15
/// heartbeats), removed `remove_after` ticks later.
fn detector(remove_after: Option<u64>) -> CoreSettings {
    CoreSettings {
        down_after_ticks: 30,
        remove_after_ticks: remove_after,
        ..settings(1000)
    }
}

impl Net {
    /// Ticks one at a time until `done` holds; the number of ticks it took, if within `limit`.
    fn ticks_until(&mut self, limit: usize, done: impl Fn(&Net) -> bool) -> Option<usize> {
        for n in 0..=limit {
            if done(self) {
                return Some(n);
            }
            self.tick();
        }
        None
    }

    fn down_everywhere(&self, nodes: &[u64], victim: u64) -> bool {
        nodes.iter().all(|id| self.cores[id].is_down(victim))
    }

    fn cut_between(&mut self, a: &[u64], b: &[u64]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }
}

#[test]
fn a_silent_member_is_marked_down_through_the_log_after_down_after_and_up_when_it_answers() {
    let mut net = Net::cluster_with(3, detector(None));
    let leader = net.leader().expect("a leader");
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != victim).collect();
    net.isolate(victim);
    let took = net
        .ticks_until(100, |net| net.down_everywhere(&survivors, victim))
        .expect("the silent member was never marked down");
    assert!((30..=33).contains(&took), "marked down after {took} ticks");
    for id in &survivors {
        let up = net.cores[id].state().up_members();
        assert!(!up.contains(&victim), "node {id} still counts it: {up:?}");
        assert!(net.cores[id].state().members.contains_key(&victim));
    }
    // A write still commits with two of three.
    assert!(matches!(
        net.propose(leader, &create("meanwhile")),
        Some(Ok(Applied::Created(_)))
    ));
    net.heal();
    let back = net.ticks_until(20, |net| (1..=3).all(|id| !net.cores[&id].is_down(victim)));
    assert!(back.is_some(), "the member answered but stayed down");
    assert!(net.channels(victim).contains("meanwhile"));
}

#[test]
fn a_member_down_past_remove_after_is_removed_and_its_messages_are_refused_afterwards() {
    let mut net = Net::cluster_with(3, detector(Some(40)));
    let leader = net.leader().expect("a leader");
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != victim).collect();
    net.isolate(victim);
    let gone = |net: &Net| {
        survivors
            .iter()
            .all(|id| !net.cores[id].state().members.contains_key(&victim))
    };
    let took = net
        .ticks_until(200, gone)
        .expect("the down member was never removed");
    assert!((70..=75).contains(&took), "removed after {took} ticks");
    for id in &survivors {
        assert!(
            !net.cores[id].knows(victim),
            "node {id} still has it in its configuration"
        );
        assert!(
            !net.cores[id].is_down(victim),
            "a removed member is not 'down' either"
        );
    }
    // The two left are a full cluster: a write commits on both.
    assert!(matches!(
        net.propose(leader, &create("after")),
        Some(Ok(Applied::Created(_)))
    ));
    // The removed node never heard of its removal; what it sends now is refused before raft.
    assert!(!net.cores[&victim].removed());
    net.rejected.clear();
    net.heal();
    net.tick_until(40, |_| false);
    assert!(
        net.rejected
            .iter()
            .any(|(to, why)| survivors.contains(to) && *why == Rejected::UnknownSender),
        "{:?}",
        net.rejected
    );
    assert!(!net.channels(victim).contains("after"));
}

#[test]
fn a_member_that_applies_its_own_removal_knows_it_was_removed() {
    let mut net = Net::cluster(3, 1000);
    let leader = net.leader().expect("a leader");
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    net.core(leader)
        .propose_change(ConfChangeType::RemoveNode, victim, None)
        .expect("remove");
    net.settle();
    net.tick_until(5, |_| false);
    assert!(net.cores[&victim].removed());
    assert!(!net.cores[&leader].removed());
}

#[test]
fn a_new_leader_gives_every_member_a_full_period_before_marking_it_down() {
    let mut net = Net::cluster_with(5, detector(None));
    let old = net.leader().expect("a leader");
    let silent = (1..=5).find(|id| *id != old).expect("a follower");
    net.isolate(silent);
    net.tick_until(20, |_| false);
    assert!(!net.cores[&old].is_down(silent), "too early");
    // The leader goes too; the three left elect a new one, which cannot know how long
    // `silent` has been quiet.
    net.isolate(old);
    let rest: Vec<u64> = (1..=5).filter(|id| *id != old && *id != silent).collect();
    let elected = net
        .ticks_until(200, |net| {
            rest.iter()
                .any(|id| net.cores[id].role() == StateRole::Leader)
        })
        .expect("no new leader");
    let marked = net
        .ticks_until(200, |net| {
            net.down_everywhere(&rest, silent) && net.down_everywhere(&rest, old)
        })
        .expect("never marked down");
    assert!(
        marked >= 29,
        "marked {marked} ticks after the election ({elected} ticks to elect)"
    );
}

#[test]
fn in_a_three_two_partition_only_the_majority_marks_and_removes_and_the_minority_commits_nothing() {
    let mut net = Net::cluster_with(5, detector(Some(40)));
    let leader = net.leader().expect("a leader");
    // The old leader and one follower on the small side.
    let buddy = (1..=5).find(|id| *id != leader).expect("a follower");
    let minority = vec![leader, buddy];
    let majority: Vec<u64> = (1..=5).filter(|id| !minority.contains(id)).collect();
    net.cut_between(&minority, &majority);
    let removed = net.ticks_until(400, |net| {
        majority.iter().all(|id| {
            let m = &net.cores[id].state().members;
            m.len() == 3 && !m.contains_key(&leader) && !m.contains_key(&buddy)
        })
    });
    assert!(removed.is_some(), "the majority did not remove both");
    let new_leader = majority
        .iter()
        .copied()
        .find(|id| net.cores[id].role() == StateRole::Leader)
        .expect("the majority has a leader");
    assert!(matches!(
        net.propose(new_leader, &create("three")),
        Some(Ok(Applied::Created(_)))
    ));
    for id in &minority {
        let core = &net.cores[id];
        assert_ne!(core.role(), StateRole::Leader, "node {id} still leads");
        assert!(
            core.state().down.is_empty(),
            "node {id} committed a verdict"
        );
        assert_eq!(
            core.state().members.len(),
            5,
            "node {id} committed a removal"
        );
    }
}

#[test]
fn a_core_restarted_on_its_disk_is_the_same_member_and_catches_up_past_compactions_and_conf_changes(
) {
    // Compaction every 5 entries: the restart point is a persisted snapshot, not the log start.
    let mut net = Net::durable(3, 5);
    for i in 0..12 {
        let leader = net.leader().expect("a leader");
        assert!(matches!(
            net.propose(leader, &create(&format!("a{i}"))),
            Some(Ok(Applied::Created(_)))
        ));
    }
    let term_before = net.cores[&3].term();
    net.crash(3);
    // While it is down: more writes, and a membership change it must replay in order.
    for i in 0..8 {
        let leader = net.leader().expect("a leader");
        assert!(matches!(
            net.propose(leader, &create(&format!("b{i}"))),
            Some(Ok(Applied::Created(_)))
        ));
    }
    net.add(4);
    net.spawn(3);
    assert!(net.cores[&3].started(), "restored as a started member");
    assert!(
        net.cores[&3].term() >= term_before,
        "its term (and vote) survived"
    );
    let caught_up = net.tick_until(300, |net| {
        net.channels(3).len() == 20 && net.cores[&3].state().members.contains_key(&4)
    });
    assert!(
        caught_up,
        "node 3 has {} channels, members {:?}",
        net.channels(3).len(),
        net.cores[&3].state().members.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        net.cores[&3].leader(),
        net.leader(),
        "it follows the leader"
    );
    // And it still votes: with node 1 cut off, 2, 3 and 4 elect a leader and commit.
    net.isolate(1);
    let elected = net.tick_until(300, |net| {
        net.cores
            .values()
            .any(|c| c.id() != 1 && c.role() == StateRole::Leader)
    });
    assert!(elected, "a leader among 2, 3, 4");
}

#[test]
fn a_whole_cluster_crashed_at_once_restarts_from_its_disks_with_every_write() {
    let mut net = Net::durable(3, 4);
    for i in 0..10 {
        let leader = net.leader().expect("a leader");
        assert!(matches!(
            net.propose(leader, &create(&format!("c{i}"))),
            Some(Ok(Applied::Created(_)))
        ));
    }
    for id in 1..=3 {
        net.crash(id);
    }
    for id in 1..=3 {
        net.spawn(id);
    }
    let back = net.tick_until(300, |net| {
        net.leader().is_some() && (1..=3).all(|id| net.channels(id).len() == 10)
    });
    assert!(
        back,
        "channels per node: {:?}",
        (1..=3).map(|id| net.channels(id).len()).collect::<Vec<_>>()
    );
    let leader = net.leader().expect("a leader");
    assert!(matches!(
        net.propose(leader, &create("after")),
        Some(Ok(Applied::Created(_)))
    ));
}
