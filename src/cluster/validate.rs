//! The gate in front of `RawNode::step`: every Raft message that arrives from a peer is checked
//! here first. raft-rs trusts its input (a heartbeat claiming a commit index beyond the log
//! panics inside it), and anyone who can reach the peer port can send one; so messages that are
//! not for us, come from outside the configuration, or carry indexes raft-rs cannot accept are
//! dropped and counted by reason. Pure: the node passes in what it knows.

use raft::eraftpb::{Message, MessageType};

/// Why a peer's Raft message was dropped (the `reason` label of
/// `wrs_peer_messages_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Addressed to another node id (for example a restarted node's old id).
    WrongRecipient,
    /// `from` differs from the node id the link was opened by.
    ForgedSender,
    /// The sender is not a voter or learner of the configuration this node knows.
    UnknownSender,
    /// A message type raft-rs only generates locally (ticks, reports).
    LocalOnly,
    /// A heartbeat claiming a commit index this node's log does not reach.
    CommitOutOfRange,
    /// An append whose entries do not follow its index one by one.
    BadEntries,
    /// A snapshot without a configuration or index.
    BadSnapshot,
    /// Term 0 on a message only raft-rs itself sends without a term (found by tests/fuzz.rs:
    /// raft-rs reads a term-0 `MsgReadIndexResp` beyond the log as a commit and panics).
    MissingTerm,
    /// A term on a forwarded proposal or read request, which raft-rs sends without one (it
    /// panics when it forwards such a message on; found by tests/fuzz.rs).
    UnexpectedTerm,
}

impl Rejected {
    pub const ALL: [Rejected; 9] = [
        Rejected::WrongRecipient,
        Rejected::ForgedSender,
        Rejected::UnknownSender,
        Rejected::LocalOnly,
        Rejected::CommitOutOfRange,
        Rejected::BadEntries,
        Rejected::BadSnapshot,
        Rejected::MissingTerm,
        Rejected::UnexpectedTerm,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejected::WrongRecipient => "wrong_recipient",
            Rejected::ForgedSender => "forged_sender",
            Rejected::UnknownSender => "unknown_sender",
            Rejected::LocalOnly => "local_only",
            Rejected::CommitOutOfRange => "commit_out_of_range",
            Rejected::BadEntries => "bad_entries",
            Rejected::BadSnapshot => "bad_snapshot",
            Rejected::MissingTerm => "missing_term",
            Rejected::UnexpectedTerm => "unexpected_term",
        }
    }
}

/// What the node knows when a message arrives.
pub struct Known<F: Fn(u64) -> bool> {
    /// This node's id.
    pub me: u64,
    /// The node id named by the link the message came on.
    pub link_from: u64,
    /// The last index of this node's log.
    pub last_index: u64,
    /// Whether this node has a configuration yet; a node still waiting to be added accepts
    /// a first leader it cannot know.
    pub started: bool,
    /// Whether an id is a voter or learner of the configuration.
    pub is_member: F,
}

/// Checks one message; `Ok` means raft-rs may see it.
pub fn check<F: Fn(u64) -> bool>(m: &Message, known: &Known<F>) -> Result<(), Rejected> {
    use MessageType::*;
    if m.to != known.me {
        return Err(Rejected::WrongRecipient);
    }
    if m.from != known.link_from {
        return Err(Rejected::ForgedSender);
    }
    if known.started && !(known.is_member)(m.from) {
        return Err(Rejected::UnknownSender);
    }
    match m.get_msg_type() {
        MsgHup | MsgBeat | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum => {
            Err(Rejected::LocalOnly)
        }
        // Only what a follower forwards to its leader (proposals, read requests, leadership
        // transfers) travels without a term, and always without one: raft-rs takes a term-0
        // message for a local one, and panics when it forwards one that has a term.
        t if m.term == 0 && !matches!(t, MsgPropose | MsgReadIndex | MsgTransferLeader) => {
            Err(Rejected::MissingTerm)
        }
        MsgPropose | MsgReadIndex | MsgTransferLeader if m.term != 0 => {
            Err(Rejected::UnexpectedTerm)
        }
        MsgHeartbeat if m.commit > known.last_index => Err(Rejected::CommitOutOfRange),
        // Every entry from index 1 on has a term; raft-rs reads a missing one (0) as matching
        // any index beyond its log and then commits past its end (found by tests/fuzz.rs).
        MsgAppend if m.index > 0 && m.log_term == 0 => Err(Rejected::BadEntries),
        MsgAppend => {
            let follows = m
                .entries
                .iter()
                .enumerate()
                .all(|(i, e)| Some(e.index) == m.index.checked_add(1 + i as u64));
            if follows {
                Ok(())
            } else {
                Err(Rejected::BadEntries)
            }
        }
        MsgSnapshot => {
            let meta = m.get_snapshot().get_metadata();
            // A snapshot's term is never 0; raft-rs matches a missing one against any index
            // beyond its log and commits past its end (found by tests/fuzz.rs).
            if meta.index == 0 || meta.term == 0 || meta.get_conf_state().voters.is_empty() {
                Err(Rejected::BadSnapshot)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    fn known(started: bool) -> Known<impl Fn(u64) -> bool> {
        Known {
            me: 1,
            link_from: 2,
            last_index: 10,
            started,
            is_member: |id| id == 1 || id == 2,
        }
    }

    fn msg(t: MessageType) -> Message {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.to = 1;
        m.from = 2;
        m.term = 1;
        m
    }

    #[test]
    fn an_append_without_the_term_of_its_previous_entry_is_refused() {
        let mut m = msg(MessageType::MsgAppend);
        m.index = 11;
        m.commit = 11;
        assert_eq!(check(&m, &known(true)), Err(Rejected::BadEntries));
        m.log_term = 1;
        assert_eq!(check(&m, &known(true)), Ok(()));
        m.index = 0;
        m.log_term = 0;
        assert_eq!(check(&m, &known(true)), Ok(()), "the very first append");
    }

    #[test]
    fn a_term_0_message_is_refused_unless_raft_sends_it_without_one() {
        let mut m = msg(MessageType::MsgReadIndexResp);
        m.term = 0;
        m.index = 11;
        assert_eq!(check(&m, &known(true)), Err(Rejected::MissingTerm));
        for t in [
            MessageType::MsgPropose,
            MessageType::MsgReadIndex,
            MessageType::MsgTransferLeader,
        ] {
            let mut m = msg(t);
            assert_eq!(
                check(&m, &known(true)),
                Err(Rejected::UnexpectedTerm),
                "{t:?}"
            );
            m.term = 0;
            assert_eq!(check(&m, &known(true)), Ok(()), "{t:?}");
        }
    }

    #[test]
    fn a_crafted_heartbeat_beyond_the_log_is_rejected_and_a_real_one_passes() {
        let mut m = msg(MessageType::MsgHeartbeat);
        m.term = 1 << 40;
        m.commit = 1 << 40;
        assert_eq!(check(&m, &known(true)), Err(Rejected::CommitOutOfRange));
        m.commit = 10;
        assert_eq!(check(&m, &known(true)), Ok(()));
    }

    #[test]
    fn recipient_sender_and_membership_are_checked_first() {
        let mut m = msg(MessageType::MsgAppendResponse);
        m.to = 9;
        assert_eq!(check(&m, &known(true)), Err(Rejected::WrongRecipient));
        m.to = 1;
        m.from = 3;
        assert_eq!(check(&m, &known(true)), Err(Rejected::ForgedSender));
        let stranger = Known {
            link_from: 3,
            ..known(true)
        };
        assert_eq!(check(&m, &stranger), Err(Rejected::UnknownSender));
        let joining = Known {
            link_from: 3,
            ..known(false)
        };
        assert_eq!(
            check(&m, &joining),
            Ok(()),
            "a node waiting to join hears its leader"
        );
    }

    #[test]
    fn local_only_types_entries_out_of_order_and_empty_snapshots_are_rejected() {
        for t in [
            MessageType::MsgHup,
            MessageType::MsgBeat,
            MessageType::MsgSnapStatus,
        ] {
            assert_eq!(check(&msg(t), &known(true)), Err(Rejected::LocalOnly));
        }
        let mut append = msg(MessageType::MsgAppend);
        append.index = 4;
        append.log_term = 1;
        let entry = |index| Entry {
            index,
            ..Default::default()
        };
        append.entries = vec![entry(5), entry(6)].into();
        assert_eq!(check(&append, &known(true)), Ok(()));
        append.entries = vec![entry(5), entry(9)].into();
        assert_eq!(check(&append, &known(true)), Err(Rejected::BadEntries));
        append.index = u64::MAX;
        append.entries = vec![entry(0)].into();
        assert_eq!(check(&append, &known(true)), Err(Rejected::BadEntries));
        let mut snap = msg(MessageType::MsgSnapshot);
        assert_eq!(check(&snap, &known(true)), Err(Rejected::BadSnapshot));
        let meta = snap.mut_snapshot().mut_metadata();
        meta.index = 11;
        meta.mut_conf_state().voters = vec![1];
        assert_eq!(
            check(&snap, &known(true)),
            Err(Rejected::BadSnapshot),
            "term 0"
        );
        snap.mut_snapshot().mut_metadata().term = 1;
        assert_eq!(check(&snap, &known(true)), Ok(()));
    }
}
