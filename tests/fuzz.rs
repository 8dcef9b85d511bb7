//! Property-based fuzzing (proptest) of every decoder that reads the network: REST bodies and
//! query strings, the req-repl subprotocol, the peer wire (links and forwarded publishes), the
//! Raft batch decoder with the validation in front of raft-rs, and path normalisation. proptest
//! rather than cargo-fuzz: libFuzzer needs a nightly compiler, and CI has stable only.
//!
//! Bounded: each target runs `WRS_FUZZ_CASES` cases (default 2,000; CI's whole run takes
//! seconds). The corpus lives in the repo: `tests/fuzz-corpus/<target>/` holds seed inputs that
//! every run replays first (the crafted heartbeat among them), and proptest records any failing
//! case it shrinks in `tests/fuzz-corpus/<target>.regressions` and replays it on every later run.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Message, MessageType, Snapshot};
use raft::storage::MemStorage;
use raft::{RawNode, Storage};
use wrs::actors::subprotocol::{self, Envelope};
use wrs::api::{path, spec};
use wrs::cluster::peer::wire::{self, Frame};
use wrs::cluster::validate::{self, Known};

fn config(target: &'static str) -> Config {
    let cases = std::env::var("WRS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let file = Box::leak(format!("tests/fuzz-corpus/{target}.regressions").into_boxed_str());
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..Config::default()
    }
}

/// The seed inputs of a target, as raw bytes.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("corpus entry").path();
            let bytes = std::fs::read(&p).expect("corpus file");
            (p, bytes)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "corpus {} is empty", dir.display());
    seeds
}

// ---- REST bodies and query strings ----

fn rest_body(bytes: &[u8]) {
    if let Ok(s) = spec::from_body(bytes) {
        // Whatever was accepted is within the documented bounds.
        assert!(s.client_limit >= -1 && s.timeout >= -1, "{s:?}");
    }
}

#[test]
fn rest_bodies_get_a_spec_or_a_named_error_never_a_panic() {
    for (p, seed) in corpus("rest_body") {
        catch_unwind(|| rest_body(&seed)).unwrap_or_else(|_| panic!("seed {}", p.display()));
    }
    let json_ish = prop::collection::vec(
        prop_oneof![
            Just(b'{'),
            Just(b'}'),
            Just(b'"'),
            Just(b':'),
            Just(b','),
            any::<u8>()
        ],
        0..200,
    );
    let fields = (
        prop_oneof![
            Just("echo".to_owned()),
            Just("pub-sub".to_owned()),
            ".{0,12}"
        ],
        any::<i64>(),
        any::<f64>(),
        any::<bool>(),
    )
        .prop_map(|(p, l, t, i)| {
            format!(r#"{{"pattern":{p:?},"clientLimit":{l},"timeout":{t},"includeSender":{i}}}"#)
                .into_bytes()
        });
    proptest!(config("rest_body"), |(body in prop_oneof![json_ish, fields])| {
        rest_body(&body);
    });
}

#[test]
fn browser_only_query_strings_get_a_spec_or_a_named_error() {
    let keys = prop_oneof![
        Just("pattern"),
        Just("clientlimit"),
        Just("clientLimit"),
        Just("timeout"),
        Just("includeSender"),
        Just("other"),
    ];
    let query = prop::collection::hash_map(keys.prop_map(str::to_owned), ".{0,24}", 0..6);
    proptest!(config("query"), |(q in query)| {
        let q: HashMap<String, String> = q;
        let _ = spec::from_query(&q);
    });
}

// ---- the req-repl / fan-in-out subprotocol ----

#[test]
fn subprotocol_messages_route_or_answer_an_error_code() {
    for (p, seed) in corpus("subprotocol") {
        let text = String::from_utf8_lossy(&seed);
        catch_unwind(|| subprotocol::parse(&text, "me"))
            .unwrap_or_else(|_| panic!("seed {}", p.display()))
            .ok();
    }
    let text = prop_oneof![
        ".{0,64}",
        (
            prop_oneof![Just("request"), Just("reply"), Just("x")],
            ".{0,16}"
        )
            .prop_map(|(t, o)| format!(r#"{{"type":"{t}","origin":{o:?},"data":1}}"#)),
    ];
    proptest!(config("subprotocol"), |(text in text)| {
        match subprotocol::parse(&text, "sender-1") {
            Ok(Envelope::Request(out)) => {
                // A request is re-serialised with the server's origin, whatever the client said.
                let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON out");
                prop_assert_eq!(&v["origin"], "sender-1");
            }
            Ok(Envelope::Reply { .. }) => {}
            Err(e) => prop_assert!(!e.code().is_empty()),
        }
    });
}

// ---- the peer wire ----

fn frame() -> impl Strategy<Value = Frame> {
    let bytes = prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
    prop_oneof![
        prop::collection::vec(bytes.clone(), 0..4).prop_map(Frame::Raft),
        (".{0,8}", ".{0,8}", any::<bool>(), bytes.clone()).prop_map(|(c, f, t, p)| {
            Frame::Publish {
                channel: c,
                from: f,
                text: t,
                payload: p,
            }
        }),
        (".{0,8}", ".{0,8}").prop_map(|(c, cl)| Frame::Leave {
            channel: c,
            client: cl
        }),
        (".{0,8}", prop::collection::vec(".{0,8}", 0..8), bytes).prop_map(|(c, to, f)| {
            Frame::Deliver {
                channel: c,
                to,
                frame: f,
            }
        }),
    ]
}

#[test]
fn peer_frames_round_trip_and_garbage_is_an_error_not_a_panic() {
    for (p, seed) in corpus("peer_wire") {
        catch_unwind(|| Frame::decode(&seed))
            .unwrap_or_else(|_| panic!("seed {}", p.display()))
            .ok();
    }
    proptest!(config("peer_wire"), |(f in frame(), garbage in prop::collection::vec(any::<u8>(), 0..256), cut in any::<prop::sample::Index>())| {
        let encoded = f.encode();
        prop_assert_eq!(Frame::decode(&encoded).expect("own encoding decodes"), f);
        // A truncated frame and random bytes are errors, never a panic or a huge allocation.
        let _ = Frame::decode(&encoded[..cut.index(encoded.len().max(1)).min(encoded.len())]);
        let _ = Frame::decode(&garbage);
    });
}

#[test]
fn forwarded_publishes_round_trip_and_garbage_is_an_error_not_a_panic() {
    let request = (
        ".{0,12}",
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..128),
    )
        .prop_map(|(channel, text, payload)| wire::PublishRequest {
            channel,
            text,
            payload: Bytes::from(payload),
        });
    proptest!(config("peer_publish"), |(r in request, garbage in prop::collection::vec(any::<u8>(), 0..256), cut in any::<prop::sample::Index>())| {
        let encoded = r.encode();
        prop_assert_eq!(wire::PublishRequest::decode(&encoded).expect("own encoding decodes"), r);
        let _ = wire::PublishRequest::decode(&encoded[..cut.index(encoded.len().max(1)).min(encoded.len())]);
        let _ = wire::PublishRequest::decode(&garbage);
    });
}

// ---- Raft batches: decoder, validation, then raft-rs itself ----

/// A follower (id 1) of a three-node cluster with ten entries of term 1, five committed.
fn follower() -> RawNode<MemStorage> {
    let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
    let entries: Vec<Entry> = (1..=10)
        .map(|i| Entry {
            index: i,
            term: 1,
            ..Default::default()
        })
        .collect();
    storage.wl().append(&entries).expect("append");
    storage.wl().set_hardstate(HardState {
        term: 1,
        commit: 5,
        ..Default::default()
    });
    let config = raft::Config {
        id: 1,
        heartbeat_tick: 3,
        election_tick: 20,
        check_quorum: true,
        pre_vote: true,
        applied: 0,
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    RawNode::new(&config, storage, &logger).expect("raw node")
}

/// What `node.rs` does with a Ready, minus the network: persist, apply, advance.
fn drain_ready(node: &mut RawNode<MemStorage>) {
    while node.has_ready() {
        let mut ready = node.ready();
        let store = node.store().clone();
        if *ready.snapshot() != Snapshot::default() {
            store
                .wl()
                .apply_snapshot(ready.snapshot().clone())
                .expect("apply snapshot");
        }
        store.wl().append(ready.entries()).expect("append");
        if let Some(hs) = ready.hs() {
            store.wl().set_hardstate(hs.clone());
        }
        let _ = ready.take_committed_entries();
        let mut light = node.advance(ready);
        if let Some(commit) = light.commit_index() {
            store.wl().mut_hard_state().commit = commit;
        }
        let _ = light.take_committed_entries();
        node.advance_apply();
    }
}

fn raft_message() -> impl Strategy<Value = Message> {
    let types = prop::sample::select(vec![
        MessageType::MsgHup,
        MessageType::MsgBeat,
        MessageType::MsgPropose,
        MessageType::MsgAppend,
        MessageType::MsgAppendResponse,
        MessageType::MsgRequestVote,
        MessageType::MsgRequestVoteResponse,
        MessageType::MsgSnapshot,
        MessageType::MsgHeartbeat,
        MessageType::MsgHeartbeatResponse,
        MessageType::MsgUnreachable,
        MessageType::MsgSnapStatus,
        MessageType::MsgCheckQuorum,
        MessageType::MsgTransferLeader,
        MessageType::MsgTimeoutNow,
        MessageType::MsgReadIndex,
        MessageType::MsgReadIndexResp,
        MessageType::MsgRequestPreVote,
        MessageType::MsgRequestPreVoteResponse,
    ]);
    // Small numbers hit the interesting edges (around the log's 10 entries); any u64 the rest.
    let num = || prop_oneof![0u64..16, any::<u64>()];
    (
        types,
        prop::sample::select(vec![1u64, 2, 3, 7]),
        prop::sample::select(vec![1u64, 2, 3, 99]),
        (num(), num(), num(), num()),
        prop::collection::vec((num(), num()), 0..4),
        (
            num(),
            num(),
            prop::collection::vec(1u64..5, 0..4),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(t, to, from, (term, index, log_term, commit), entries, snap)| {
                let mut m = Message::default();
                m.set_msg_type(t);
                m.to = to;
                m.from = from;
                m.term = term;
                m.index = index;
                m.log_term = log_term;
                m.commit = commit;
                m.reject = snap.3;
                m.reject_hint = index;
                m.entries = entries
                    .into_iter()
                    .map(|(i, term)| Entry {
                        index: i,
                        term,
                        ..Default::default()
                    })
                    .collect::<Vec<_>>()
                    .into();
                if t == MessageType::MsgSnapshot {
                    let meta = m.mut_snapshot().mut_metadata();
                    meta.index = snap.0;
                    meta.term = snap.1;
                    meta.mut_conf_state().voters = snap.2;
                }
                m
            },
        )
}

/// Decodes a batch as the peer server does, validates it as `node.rs` does and steps what
/// passes into a real follower; raft-rs must never panic on what validation lets through.
fn raft_batch(parts: &[Bytes]) {
    let Ok(msgs) = wire::raft_messages(parts) else {
        return;
    };
    let mut node = follower();
    for m in msgs {
        let known = Known {
            me: 1,
            link_from: 2,
            last_index: node.raft.raft_log.last_index(),
            started: true,
            is_member: |id| node.raft.prs().get(id).is_some(),
        };
        if validate::check(&m, &known).is_err() {
            continue;
        }
        let _ = node.step(m);
        drain_ready(&mut node);
    }
    let last = node.raft.raft_log.last_index();
    assert!(node.store().last_index().expect("store") <= last.max(10));
}

#[test]
fn raft_batches_from_the_peer_port_never_panic_raft() {
    for (p, seed) in corpus("raft_batch") {
        let parts = match Frame::decode(&seed) {
            Ok(Frame::Raft(parts)) => parts,
            _ => vec![Bytes::from(seed.clone())],
        };
        catch_unwind(AssertUnwindSafe(|| raft_batch(&parts)))
            .unwrap_or_else(|_| panic!("seed {}", p.display()));
    }
    let from_link = prop::collection::vec(
        raft_message().prop_map(|mut m| {
            // Mostly messages that claim the link's own sender, so they get past the first checks.
            if m.from != 99 {
                m.from = 2;
            }
            Bytes::from(m.write_to_bytes().expect("encode"))
        }),
        1..6,
    );
    let garbage = prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
        1..3,
    );
    proptest!(config("raft_batch"), |(parts in prop_oneof![4 => from_link, 1 => garbage])| {
        raft_batch(&parts);
    });
}

// ---- path normalisation ----

fn respell(canonical: &str, choices: &[u8]) -> String {
    // Each byte of `choices` picks a spelling for one character or slash of the path.
    let mut out = String::new();
    let mut k = 0;
    let mut next = || {
        k += 1;
        choices.get(k - 1).copied().unwrap_or(0)
    };
    for c in canonical.chars() {
        let pick = next();
        match (c, pick % 7) {
            ('/', 1) => out.push_str("//"),
            ('/', 2) => out.push_str("/./"),
            ('/', 3) => out.push_str("/x/../"),
            ('/', 4) => out.push_str("%2F"),
            (c, 5) if c != '/' => out.push_str(&format!("%{:02X}", c as u32)),
            (c, 6) if c != '/' => out.push_str(&format!("%{:02x}", c as u32)),
            (c, _) => out.push(c),
        }
    }
    if next() % 2 == 1 {
        out.push('/');
    }
    out
}

#[test]
fn every_spelling_of_a_path_normalises_to_its_canonical_form() {
    let segments = prop::collection::vec("[a-z0-9_-]{1,8}", 1..5);
    let choices = prop::collection::vec(any::<u8>(), 0..64);
    proptest!(config("path"), |(segs in segments, choices in choices, raw in ".{0,40}")| {
        let canonical = format!("/{}", segs.join("/"));
        let canonical = path::normalise(&canonical).expect("a plain path normalises");
        let spelled = respell(&canonical, &choices);
        prop_assert_eq!(path::normalise(&spelled), Ok(canonical.clone()), "spelling {}", spelled);
        // Any input: an error, or a canonical path that normalising again leaves unchanged.
        if let Ok(n) = path::normalise(&raw) {
            prop_assert!(n.starts_with('/') && !n.contains("//"), "{}", n);
            prop_assert!(!n.split('/').any(|s| s == "." || s == ".."), "{}", n);
            prop_assert_eq!(path::normalise(&n), Ok(n.clone()));
        }
    });
}
