//! The five messaging patterns as pure functions: (pattern, sender, client queue, message kind)
//! → who receives it. No I/O here, so the cluster can reuse it unchanged; unit-tested below.

pub use crate::model::Pattern;

/// What a message is, as far as routing cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind<C> {
    /// A plain message (echo, pub-sub, push-pull).
    Plain,
    /// A subprotocol request (req-repl, fan-in-out).
    Request,
    /// A subprotocol reply to the client `origin`.
    Reply(C),
}

/// Who receives one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets<C> {
    /// Nobody (e.g. a pub-sub message from a lone client).
    Nobody,
    /// One client (the sender itself for echo).
    One(C),
    /// Every client but the sender.
    Others,
    /// Every client including the sender.
    Everyone,
    /// A reply whose origin is not connected: the sender gets an error frame.
    UnknownOrigin,
}

/// The clients of a channel in join order, with the round-robin cursor of push-pull and
/// fan-in-out. Generic over the client id so tests (and the cluster) can use any id type.
#[derive(Debug, Clone)]
pub struct ClientQueue<C> {
    ids: Vec<C>,
    cursor: usize,
}

impl<C> Default for ClientQueue<C> {
    fn default() -> Self {
        ClientQueue {
            ids: Vec::new(),
            cursor: 0,
        }
    }
}

impl<C: PartialEq + Clone> ClientQueue<C> {
    pub fn contains(&self, id: &C) -> bool {
        self.ids.contains(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &C> {
        self.ids.iter()
    }

    pub fn join(&mut self, id: C) {
        if !self.contains(&id) {
            self.ids.push(id);
        }
    }

    pub fn leave(&mut self, id: &C) -> bool {
        let Some(pos) = self.ids.iter().position(|c| c == id) else {
            return false;
        };
        self.ids.remove(pos);
        // Keep the cursor on the client that was next, so removal does not skip anyone.
        if pos < self.cursor {
            self.cursor -= 1;
        }
        if self.cursor >= self.ids.len() {
            self.cursor = 0;
        }
        true
    }

    /// The next client in round-robin order other than `sender`; the sender itself only when
    /// nobody else is connected.
    pub fn next_other(&mut self, sender: &C) -> Option<C> {
        let n = self.ids.len();
        for _ in 0..n {
            let idx = self.cursor % n;
            self.cursor = (idx + 1) % n;
            if &self.ids[idx] != sender {
                return Some(self.ids[idx].clone());
            }
        }
        self.ids.first().cloned()
    }
}

/// Decides the recipients of one message from `sender`.
pub fn route<C: PartialEq + Clone>(
    pattern: Pattern,
    include_sender: bool,
    queue: &mut ClientQueue<C>,
    sender: &C,
    kind: Kind<C>,
) -> Targets<C> {
    match (pattern, kind) {
        (_, Kind::Reply(origin)) => {
            if queue.contains(&origin) {
                Targets::One(origin)
            } else {
                Targets::UnknownOrigin
            }
        }
        (Pattern::Echo, _) => Targets::One(sender.clone()),
        (Pattern::PubSub, _) if include_sender => Targets::Everyone,
        (Pattern::PubSub | Pattern::ReqRepl, _) => {
            if queue.iter().any(|c| c != sender) {
                Targets::Others
            } else {
                Targets::Nobody
            }
        }
        (Pattern::PushPull | Pattern::FanInOut, _) => match queue.next_other(sender) {
            Some(c) => Targets::One(c),
            None => Targets::Nobody,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(ids: &[&'static str]) -> ClientQueue<&'static str> {
        let mut q = ClientQueue::default();
        for id in ids {
            q.join(*id);
        }
        q
    }

    #[test]
    fn pattern_names_round_trip_and_unknown_names_fail() {
        for p in Pattern::ALL {
            assert_eq!(p.as_str().parse::<Pattern>(), Ok(p));
        }
        assert!("pubsub".parse::<Pattern>().is_err());
    }

    #[test]
    fn echo_goes_back_to_the_sender_only() {
        let mut q = queue(&["a", "b"]);
        let t = route(Pattern::Echo, false, &mut q, &"a", Kind::Plain);
        assert_eq!(t, Targets::One("a"));
    }

    #[test]
    fn pub_sub_goes_to_others_and_a_lone_sender_gets_nothing() {
        let mut q = queue(&["a", "b", "c"]);
        assert_eq!(
            route(Pattern::PubSub, false, &mut q, &"a", Kind::Plain),
            Targets::Others
        );
        let mut lone = queue(&["a"]);
        assert_eq!(
            route(Pattern::PubSub, false, &mut lone, &"a", Kind::Plain),
            Targets::Nobody
        );
    }

    #[test]
    fn pub_sub_with_include_sender_goes_to_everyone() {
        let mut q = queue(&["a"]);
        assert_eq!(
            route(Pattern::PubSub, true, &mut q, &"a", Kind::Plain),
            Targets::Everyone
        );
    }

    #[test]
    fn push_pull_is_fair_round_robin_that_skips_the_sender() {
        let mut q = queue(&["p", "w1", "w2", "w3"]);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..300 {
            match route(Pattern::PushPull, false, &mut q, &"p", Kind::Plain) {
                Targets::One(c) => *counts.entry(c).or_insert(0) += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(counts.get("p"), None);
        for w in ["w1", "w2", "w3"] {
            assert_eq!(counts[w], 100, "{counts:?}");
        }
    }

    #[test]
    fn push_pull_lone_sender_gets_its_own_message() {
        let mut q = queue(&["p"]);
        assert_eq!(
            route(Pattern::PushPull, false, &mut q, &"p", Kind::Plain),
            Targets::One("p")
        );
    }

    #[test]
    fn round_robin_stays_fair_when_clients_leave_and_join() {
        let mut q = queue(&["p", "a", "b", "c"]);
        assert_eq!(q.next_other(&"p"), Some("a"));
        assert_eq!(q.next_other(&"p"), Some("b"));
        q.leave(&"a");
        assert_eq!(q.next_other(&"p"), Some("c"));
        q.join("d");
        assert_eq!(q.next_other(&"p"), Some("b"));
        assert_eq!(q.next_other(&"p"), Some("c"));
        assert_eq!(q.next_other(&"p"), Some("d"));
    }

    #[test]
    fn req_repl_requests_go_to_others_and_replies_to_their_origin() {
        let mut q = queue(&["a", "b", "c"]);
        assert_eq!(
            route(Pattern::ReqRepl, false, &mut q, &"a", Kind::Request),
            Targets::Others
        );
        assert_eq!(
            route(Pattern::ReqRepl, false, &mut q, &"b", Kind::Reply("a")),
            Targets::One("a")
        );
        assert_eq!(
            route(Pattern::ReqRepl, false, &mut q, &"b", Kind::Reply("zz")),
            Targets::UnknownOrigin
        );
    }

    #[test]
    fn fan_in_out_requests_round_robin_and_come_back_to_a_lone_client() {
        let mut q = queue(&["a", "b", "c"]);
        let first = route(Pattern::FanInOut, false, &mut q, &"a", Kind::Request);
        let second = route(Pattern::FanInOut, false, &mut q, &"a", Kind::Request);
        assert_eq!((first, second), (Targets::One("b"), Targets::One("c")));
        let mut lone = queue(&["a"]);
        assert_eq!(
            route(Pattern::FanInOut, false, &mut lone, &"a", Kind::Request),
            Targets::One("a")
        );
    }
}
