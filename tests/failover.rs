//! A cluster that heals itself, end to end (processes on loopback): a crashed owner's channels
//! move to survivors and their clients keep talking, dead members are marked down and then
//! removed, ghost seats are freed, a Deployment's churn keeps a leader, and a node stopped past
//! its removal rejoins by itself. Each test prints what it injected and what it measured.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wrs_test_support::*;

/// Fast failure detection for tests: down after 1.5 s.
const DOWN_AFTER_MS: u64 = 1500;
const DOWN_AFTER: &str = "1500";

/// The bound the contract gives for a new client after a crash: down-after + 5 s.
fn connect_bound() -> Duration {
    Duration::from_millis(DOWN_AFTER_MS) + Duration::from_secs(5)
}

fn node_in_view(view: &Value, id: u64) -> Option<&Value> {
    view["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"].as_u64() == Some(id))
}

/// Waits until every server's view shows member `id` in `state`; returns how long it took.
async fn wait_member_state(servers: &[&Server], id: u64, state: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    poll_until(&format!("node {id} {state} everywhere"), limit, || async {
        for s in servers {
            let v = s.try_cluster_view().await.ok_or("no view")?;
            let seen = node_in_view(&v, id).map(|n| n["state"].clone());
            if seen.as_ref().and_then(Value::as_str) != Some(state) {
                return Err(format!("{} sees {seen:?}", s.address()));
            }
        }
        Ok(())
    })
    .await;
    start.elapsed()
}

/// Waits until no server lists member `id`.
async fn wait_member_gone(servers: &[&Server], id: u64, limit: Duration) -> Duration {
    let start = Instant::now();
    poll_until(&format!("node {id} removed everywhere"), limit, || async {
        for s in servers {
            let v = s.try_cluster_view().await.ok_or("no view")?;
            if node_in_view(&v, id).is_some() {
                return Err(format!("{} still lists it", s.address()));
            }
        }
        Ok(())
    })
    .await;
    start.elapsed()
}

/// Connects to `ch` on `s`, retrying until `limit`; returns the client and the time it took.
async fn connect_within(s: &Server, ch: &Created, limit: Duration) -> (Ws, Duration) {
    let start = Instant::now();
    let path = ch.connect_path();
    let ws = poll_until(
        &format!("a client connects to {} on {}", ch.id, s.address()),
        limit,
        || async { s.try_ws(&path).await },
    )
    .await;
    (ws, start.elapsed())
}

/// Sends numbered messages from `from` until `to` receives one (a message sent while the
/// channel was being taken over may be lost); returns the number `to` saw first.
async fn exchange(from: &mut Ws, to: &mut Ws, tag: &str, limit: Duration) -> u32 {
    let deadline = Instant::now() + limit;
    for n in 0.. {
        assert!(
            Instant::now() < deadline,
            "{tag}: nothing arrived within {limit:?}"
        );
        from.send_text(&format!("{tag}:{n}")).await;
        if let Some(Msg::Text(t)) = to.next_event(Duration::from_millis(300)).await {
            let got = t
                .strip_prefix(&format!("{tag}:"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{tag}: unexpected {t:?}"));
            return got;
        }
    }
    unreachable!()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[actix_rt::test]
async fn an_owner_crash_moves_its_channels_and_clients_on_survivors_keep_talking() {
    let mut c = Cluster::start(
        3,
        &[
            ("WRS_NODE_DOWN_AFTER", DOWN_AFTER),
            ("WRS_NODE_REMOVE_AFTER", "-1"),
        ],
    )
    .await;
    // The victim is a follower, so the survivors keep their leader and only ownership moves.
    let leader = c.leader_index().await;
    let victim = (0..3).find(|i| *i != leader).expect("a follower");
    let rest: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let (a, b) = (rest[0], rest[1]);
    // 12 channels: with three members the victim owns some of them (all but certainly).
    let mut chans = Vec::new();
    for i in 0..12 {
        chans.push(c.nodes[i % 3].create(json!({"pattern": "pub-sub"})).await);
    }
    // A publisher on one survivor, a subscriber on the other, for every channel.
    let mut pairs = Vec::new();
    for ch in &chans {
        let (mut p, _) = connect_within(&c.nodes[a], ch, FORM).await;
        let (mut s, _) = connect_within(&c.nodes[b], ch, FORM).await;
        exchange(&mut p, &mut s, "before", Duration::from_secs(10)).await;
        pairs.push((p, s));
    }
    let victim_id = c.nodes[victim].node_id().await;
    c.nodes[victim].kill_hard();
    let killed = Instant::now();
    eprintln!("injected: kill -9 of node {victim_id} (a follower)");

    let survivors = c.others(&[victim]);
    let marked = wait_member_state(&survivors, victim_id, "down", Duration::from_secs(10)).await;
    eprintln!("node {victim_id} marked down on both survivors after {marked:?}");

    // Every channel takes a new client on both survivors within down-after + 5 s of the crash.
    let mut waits = Vec::new();
    for ch in &chans {
        for s in &survivors {
            let left = connect_bound().saturating_sub(killed.elapsed());
            let (_ws, took) = connect_within(s, ch, left.max(Duration::from_millis(100))).await;
            waits.push(killed.elapsed().min(took + marked));
        }
    }
    // The clients connected before the crash were never disconnected and talk again.
    for (i, (p, s)) in pairs.iter_mut().enumerate() {
        exchange(p, s, &format!("after{i}"), connect_bound()).await;
    }
    let all_connectable = killed.elapsed();
    eprintln!(
        "counted: {} channels connectable on both survivors {all_connectable:?} after the crash \
         (median wait {:?}); {} publisher/subscriber pairs kept talking",
        chans.len(),
        median(waits),
        pairs.len()
    );
    assert!(all_connectable < connect_bound() + Duration::from_secs(5));
    let view = survivors[0].cluster_view().await;
    let dead = node_in_view(&view, victim_id).expect("still a member (removal is off)");
    assert_eq!(dead["state"], "down");
    let self_entry = node_in_view(&view, view["id"].as_u64().unwrap_or(0)).expect("itself");
    assert_eq!(self_entry["state"], "up");
    assert_eq!(self_entry["lastHeardMs"], 0);
    let metrics = survivors[0].get("/metrics").await.text();
    assert!(
        metrics.contains("wrs_cluster_failovers_total 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("wrs_cluster"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[actix_rt::test]
async fn a_dead_member_is_removed_after_remove_after_and_comes_back_up_if_it_answers() {
    let mut c = Cluster::start(
        3,
        &[
            ("WRS_NODE_DOWN_AFTER", DOWN_AFTER),
            ("WRS_NODE_REMOVE_AFTER", "4000"),
        ],
    )
    .await;
    let leader = c.leader_index().await;
    let victim = (0..3).find(|i| *i != leader).expect("a follower");
    let victim_id = c.nodes[victim].node_id().await;

    // A short stop: marked down, then up again once it answers; never removed.
    let pid = c.nodes[victim].pid();
    signal(pid, "STOP");
    eprintln!("injected: SIGSTOP of node {victim_id}");
    let survivors = c.others(&[victim]);
    wait_member_state(&survivors, victim_id, "down", Duration::from_secs(10)).await;
    let view = survivors[0].cluster_view().await;
    let heard = node_in_view(&view, victim_id).expect("listed")["lastHeardMs"].as_u64();
    signal(pid, "CONT");
    eprintln!("injected: SIGCONT of node {victim_id} (last heard {heard:?} ms before)");
    let back = wait_member_state(&c.all(), victim_id, "up", Duration::from_secs(10)).await;
    eprintln!("node {victim_id} up again {back:?} after SIGCONT");

    // A crash: down, then removed after 4 s more; the two left keep a leader and commit.
    c.nodes[victim].kill_hard();
    let killed = Instant::now();
    eprintln!("injected: kill -9 of node {victim_id}");
    let survivors = c.others(&[victim]);
    wait_member_gone(&survivors, victim_id, Duration::from_secs(20)).await;
    let took = killed.elapsed();
    eprintln!("counted: node {victim_id} removed {took:?} after the crash");
    assert!(
        took >= Duration::from_millis(DOWN_AFTER_MS + 4000 - 500),
        "{took:?}"
    );
    let views = wait_one_cluster(&survivors, FORM).await;
    assert_eq!(view_ids(&views[0]).len(), 2);
    let ch = survivors[0].create(json!({"pattern": "echo"})).await;
    assert_eq!(survivors[1].channel(&ch.id).await["id"], ch.id.as_str());
    let metrics = survivors[1].get("/metrics").await.text();
    assert!(
        metrics.contains("wrs_cluster_removals_total 1"),
        "{metrics}"
    );
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

/// `n` channels with room for one client each.
async fn single_seat_channels(s: &Server, n: usize) -> Vec<Created> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(
            s.create(json!({"pattern": "pub-sub", "clientLimit": 1}))
                .await,
        );
    }
    v
}

/// Every channel's one seat is taken through `holder`; after `fault`, a new client gets each
/// seat through `other` within `limit`. Returns the slowest.
async fn seats_freed(
    c: &mut Cluster,
    holder: usize,
    other: usize,
    fault: &str,
    limit: Duration,
) -> Duration {
    let chans = single_seat_channels(&c.nodes[other], 6).await;
    let mut held = Vec::new();
    for ch in &chans {
        let (ws, _) = connect_within(&c.nodes[holder], ch, FORM).await;
        held.push(ws);
        // The seat is taken cluster-wide: a second client is refused on the other node.
        let r = c.nodes[other].try_ws(&ch.connect_path()).await;
        assert!(r.is_err(), "a second client got the only seat of {}", ch.id);
    }
    match fault {
        "sigterm" => c.nodes[holder].sigterm(),
        _ => c.nodes[holder].kill_hard(),
    }
    let at = Instant::now();
    eprintln!(
        "injected: {fault} of the node holding {} seats",
        chans.len()
    );
    let mut slowest = Duration::ZERO;
    for ch in &chans {
        let left = limit
            .saturating_sub(at.elapsed())
            .max(Duration::from_millis(100));
        connect_within(&c.nodes[other], ch, left).await;
        slowest = slowest.max(at.elapsed());
    }
    drop(held);
    eprintln!("counted: every seat free again {slowest:?} after the {fault}");
    slowest
}

#[actix_rt::test]
async fn ghost_seats_are_freed_after_a_sigterm_and_after_a_kill() {
    let env = [
        ("WRS_NODE_DOWN_AFTER", DOWN_AFTER),
        ("WRS_NODE_REMOVE_AFTER", "-1"),
    ];
    // A node shutting down frees its clients' seats at once: within 5 s.
    let mut c = Cluster::start(3, &env).await;
    let leader = c.leader_index().await;
    let holder = (0..3).find(|i| *i != leader).expect("a follower");
    seats_freed(&mut c, holder, leader, "sigterm", Duration::from_secs(5)).await;
    let _ = c.nodes[holder].wait_exit(Duration::from_secs(10)).await;
    // It left for good: its own removal is no reason to join again on the way out.
    let views = wait_one_cluster(&c.others(&[holder]), FORM).await;
    assert_eq!(view_ids(&views[0]).len(), 2, "{}", views[0]);

    // A crashed node's seats: within down-after + 5 s.
    let mut c = Cluster::start(3, &env).await;
    let leader = c.leader_index().await;
    let holder = (0..3).find(|i| *i != leader).expect("a follower");
    seats_freed(&mut c, holder, leader, "kill -9", connect_bound()).await;
}

#[actix_rt::test]
async fn deployment_churn_replaces_dead_pods_and_keeps_a_leader() {
    // As a Kubernetes Deployment does: a dead pod is replaced by one at a new address.
    let mut c = Cluster::start(
        3,
        &[
            ("WRS_NODE_DOWN_AFTER", DOWN_AFTER),
            ("WRS_NODE_REMOVE_AFTER", "3000"),
        ],
    )
    .await;
    let ch = c.nodes[0].create(json!({"pattern": "pub-sub"})).await;
    let first = c.leader_index().await;
    let first = (0..3).find(|i| *i != first).expect("a follower");
    let first_id = c.nodes[first].node_id().await;
    c.nodes[first].kill_hard();
    eprintln!("injected: kill -9 of node {first_id}");
    let fresh = c.add_node().await;
    eprintln!("injected: a new node at {}", c.nodes[fresh].address());
    let alive: Vec<usize> = (0..c.nodes.len()).filter(|i| *i != first).collect();
    let alive_refs: Vec<&Server> = alive.iter().map(|i| &c.nodes[*i]).collect();
    let took = wait_member_gone(&alive_refs, first_id, Duration::from_secs(30)).await;
    let views = wait_one_cluster(&alive_refs, Duration::from_secs(30)).await;
    assert_eq!(view_ids(&views[0]).len(), 3, "three voters again");
    eprintln!("counted: the dead node was removed {took:?} later; three voters again");

    // Another pod dies: two of three voters are left, which is still a majority.
    let second = alive
        .iter()
        .copied()
        .find(|i| *i != fresh)
        .expect("an original node");
    c.nodes[second].kill_hard();
    eprintln!("injected: kill -9 of a second original node");
    let last: Vec<&Server> = (0..c.nodes.len())
        .filter(|i| *i != first && *i != second)
        .map(|i| &c.nodes[i])
        .collect();
    let created = poll_until("a write commits on the two left", FORM, || async {
        let body = json!({"pattern": "echo"});
        let r = last[0]
            .try_request("POST", "/channels", Some(&body), Duration::from_secs(3))
            .await?;
        if r.status == 201 {
            Ok(r.json())
        } else {
            Err(format!("{} {}", r.status, r.text()))
        }
    })
    .await;
    eprintln!(
        "counted: the two left have a leader and committed {}",
        created["data"]["id"]
    );
    for s in &last {
        connect_within(s, &ch, connect_bound()).await;
    }
}

#[actix_rt::test]
async fn a_node_stopped_past_its_removal_rejoins_by_itself() {
    let c = Cluster::start(
        3,
        &[
            ("WRS_NODE_DOWN_AFTER", DOWN_AFTER),
            ("WRS_NODE_REMOVE_AFTER", "2000"),
        ],
    )
    .await;
    let ch = c.nodes[0].create(json!({"pattern": "pub-sub"})).await;
    let leader = c.leader_index().await;
    let victim = (0..3).find(|i| *i != leader).expect("a follower");
    let old_id = c.nodes[victim].node_id().await;
    let pid = c.nodes[victim].pid();
    signal(pid, "STOP");
    eprintln!("injected: SIGSTOP of node {old_id}");
    let survivors = c.others(&[victim]);
    let took = wait_member_gone(&survivors, old_id, Duration::from_secs(20)).await;
    eprintln!("node {old_id} removed {took:?} after SIGSTOP");
    signal(pid, "CONT");
    let resumed = Instant::now();
    eprintln!("injected: SIGCONT");
    let views = wait_one_cluster(&c.all(), Duration::from_secs(40)).await;
    let new_id = c.nodes[victim].node_id().await;
    assert_ne!(new_id, old_id, "it rejoined as a new member");
    assert!(!view_ids(&views[0]).contains(&old_id));
    eprintln!(
        "counted: rejoined as node {new_id} {:?} after SIGCONT",
        resumed.elapsed()
    );
    // It serves the cluster's channels again.
    connect_within(&c.nodes[victim], &ch, FORM).await;
    let metrics = c.nodes[victim].get("/metrics").await.text();
    assert!(metrics.contains("wrs_cluster_rejoins_total 1"), "{metrics}");
}
