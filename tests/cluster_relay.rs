//! Cross-node relay (REQUIREMENTS §5): clients of one channel connected to *different* nodes of
//! a cluster exchange messages with exactly the single-node semantics — pub-sub reaches every
//! node, push-pull and fan-in-out stay fair round robin across nodes, replies find their origin
//! on another node, the client limit is cluster-wide, a delete (or reset) closes clients on
//! every node with 4000, and activity on any node keeps a channel alive. Messages must not go
//! through the Raft log.
//!
//! Before a measured phase, each test sends warm-up messages until every receiver got one, so
//! a join that is still on its way to the channel's owner cannot skew a count; the tests never
//! rely on sleeping.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wrs_test_support::*;

/// Sends `make(k)` from `sender` (k = 0, 1, …) until every receiver has received at least one
/// text message, then drains everything still in flight (also from the sender, which may have
/// been alone at first). Panics naming the receivers that never got anything.
async fn warm_up(sender: &mut Ws, receivers: &mut [&mut Ws], make: impl Fn(usize) -> String) {
    let deadline = Instant::now() + FORM;
    let mut seen = vec![false; receivers.len()];
    let mut k = 0;
    while !seen.iter().all(|s| *s) {
        assert!(
            Instant::now() < deadline,
            "warm-up: receivers {:?} (by index) never received a message within {FORM:?}",
            seen.iter()
                .enumerate()
                .filter(|(_, s)| !**s)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        );
        sender.send_text(&make(k)).await;
        k += 1;
        let round_end = Instant::now() + Duration::from_millis(500);
        let mut got = false;
        while !got && Instant::now() < round_end {
            for (i, r) in receivers.iter_mut().enumerate() {
                if let Some(m) = r.next_event(Duration::from_millis(20)).await {
                    match m {
                        Msg::Text(_) => {
                            seen[i] = true;
                            got = true;
                        }
                        other => panic!("warm-up: receiver {i} got {other:?}"),
                    }
                }
            }
        }
    }
    for (i, r) in receivers.iter_mut().enumerate() {
        drain(r, &format!("receiver {i}")).await;
    }
    drain(sender, "the sender").await;
}

/// Reads text messages until none arrives for [`QUIET`]; anything else fails.
async fn drain(ws: &mut Ws, who: &str) {
    while let Some(m) = ws.next_event(QUIET).await {
        if !matches!(m, Msg::Text(_)) {
            panic!("while draining {who}: {m:?}");
        }
    }
}

/// Polls `ws` in turn (20 ms each) until `done(total)` over all of them or `limit`; returns
/// what each one received. Close frames and binary messages fail the test.
async fn collect(ws: &mut [&mut Ws], want: usize, limit: Duration) -> Vec<Vec<String>> {
    let mut got: Vec<Vec<String>> = vec![Vec::new(); ws.len()];
    let deadline = Instant::now() + limit;
    while got.iter().map(Vec::len).sum::<usize>() < want && Instant::now() < deadline {
        for (i, w) in ws.iter_mut().enumerate() {
            while let Some(m) = w.next_event(Duration::from_millis(20)).await {
                match m {
                    Msg::Text(t) => got[i].push(t),
                    other => panic!("client {i} got {other:?}"),
                }
            }
        }
    }
    got
}

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The leader's commit index (from node `i`'s view).
async fn commit_index(c: &Cluster) -> u64 {
    let views = c.wait_formed().await;
    views
        .iter()
        .find(|v| v["leader"] == v["id"])
        .and_then(|v| v["commitIndex"].as_u64())
        .expect("the leader's commitIndex")
}

#[actix_rt::test]
async fn pub_sub_reaches_subscribers_on_every_node() {
    let c = Cluster::start(3, &[]).await;
    let ch = c.nodes[1].create(json!({"pattern": "pub-sub"})).await;
    c.wait_visible(&ch.id).await;
    let mut publisher = c.nodes[0].connect(&ch.id, &ch.token).await;
    let mut s0 = c.nodes[0].connect(&ch.id, &ch.token).await;
    let mut s1 = c.nodes[1].connect(&ch.id, &ch.token).await;
    let mut s2 = c.nodes[2].connect(&ch.id, &ch.token).await;
    warm_up(&mut publisher, &mut [&mut s0, &mut s1, &mut s2], |k| {
        format!("warm {k}")
    })
    .await;

    let commit_before = commit_index(&c).await;
    let n = 50;
    for i in 0..n {
        publisher.send_text(&format!("m{i}")).await;
    }
    publisher.send_binary(&[0, 1, 2, 255]).await;
    for (name, s) in [
        ("node 0", &mut s0),
        ("node 1", &mut s1),
        ("node 2", &mut s2),
    ] {
        for i in 0..n {
            match s.recv().await {
                Msg::Text(t) => assert_eq!(t, format!("m{i}"), "subscriber on {name}: order"),
                other => panic!("subscriber on {name}: expected m{i}, got {other:?}"),
            }
        }
        assert_eq!(
            s.recv_binary().await,
            vec![0, 1, 2, 255],
            "subscriber on {name}: binary stays binary"
        );
    }
    publisher.expect_silence(QUIET).await;

    // The other way: a publisher on node 2 reaches node 0 and node 1, not itself.
    s2.send_text("from node 2").await;
    assert_eq!(publisher.recv_text().await, "from node 2");
    assert_eq!(s0.recv_text().await, "from node 2");
    assert_eq!(s1.recv_text().await, "from node 2");
    s2.expect_silence(QUIET).await;

    // Messages do not travel through the Raft log.
    let commit_after = commit_index(&c).await;
    assert!(
        commit_after <= commit_before + 3,
        "{} messages raised the commit index from {commit_before} to {commit_after}",
        n + 2
    );
}

#[actix_rt::test]
async fn pub_sub_include_sender_across_nodes() {
    let c = Cluster::start(3, &[]).await;
    let ch = c.nodes[0]
        .create(json!({"pattern": "pub-sub", "includeSender": true}))
        .await;
    c.wait_visible(&ch.id).await;
    let mut a = c.nodes[1].connect(&ch.id, &ch.token).await;
    let mut b = c.nodes[2].connect(&ch.id, &ch.token).await;
    warm_up(&mut a, &mut [&mut b], |k| format!("warm {k}")).await;
    a.send_text("to all, me included").await;
    assert_eq!(a.recv_text().await, "to all, me included");
    assert_eq!(b.recv_text().await, "to all, me included");
    a.expect_silence(QUIET).await;
    b.expect_silence(QUIET).await;
}

#[actix_rt::test]
async fn push_pull_is_fair_across_nodes() {
    let c = Cluster::start(3, &[]).await;
    let ch = c.nodes[2].create(json!({"pattern": "push-pull"})).await;
    c.wait_visible(&ch.id).await;
    let mut producer = c.nodes[1].connect(&ch.id, &ch.token).await;
    // Two workers on every node, joined in interleaved node order.
    let mut workers = Vec::new();
    for _ in 0..2 {
        for s in &c.nodes {
            workers.push(s.connect(&ch.id, &ch.token).await);
        }
    }
    {
        let mut refs: Vec<&mut Ws> = workers.iter_mut().collect();
        warm_up(&mut producer, &mut refs, |k| format!("warm {k}")).await;
    }
    let n = 300;
    for i in 0..n {
        producer.send_text(&format!("job {i}")).await;
    }
    let mut refs: Vec<&mut Ws> = workers.iter_mut().collect();
    let got = collect(&mut refs, n, Duration::from_secs(30)).await;
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        n,
        "workers (node 0,1,2,0,1,2) got {counts:?} of {n}"
    );
    let fair = n / workers.len();
    for (i, k) in counts.iter().enumerate() {
        assert!(
            (fair - 1..=fair + 1).contains(k),
            "unfair split over nodes 0,1,2,0,1,2: {counts:?} (worker {i})"
        );
    }
    let mut all: Vec<String> = got.concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a job was delivered twice");
    // Each worker sees its jobs in the order they were sent.
    for (i, g) in got.iter().enumerate() {
        let nums: Vec<usize> = g
            .iter()
            .map(|t| t.trim_start_matches("job ").parse().expect("job number"))
            .collect();
        assert!(
            nums.windows(2).all(|w| w[0] < w[1]),
            "worker {i} got jobs out of order: {nums:?}"
        );
    }
    producer.expect_silence(QUIET).await;
}

#[actix_rt::test]
async fn req_repl_replies_find_their_origin_on_another_node() {
    let c = Cluster::start(3, &[]).await;
    let ch = c.nodes[0].create(json!({"pattern": "req-repl"})).await;
    c.wait_visible(&ch.id).await;
    let mut a = c.nodes[0].connect(&ch.id, &ch.token).await;
    let mut b = c.nodes[1].connect(&ch.id, &ch.token).await;
    let mut cc = c.nodes[2].connect(&ch.id, &ch.token).await;
    warm_up(&mut a, &mut [&mut b, &mut cc], |k| {
        json!({"type": "request", "warm": k}).to_string()
    })
    .await;

    a.send_json(&json!({"type": "request", "origin": "forged", "q": 1}))
        .await;
    let rb = b.recv_json().await;
    let rc = cc.recv_json().await;
    for r in [&rb, &rc] {
        assert_eq!(r["type"], "request");
        assert_eq!(r["q"], 1);
        assert!(r["origin"].is_string() && r["origin"] != "forged", "{r}");
    }
    assert_eq!(rb["origin"], rc["origin"], "one origin for A on both nodes");
    let origin_a = rb["origin"].as_str().unwrap().to_string();
    b.send_json(&json!({"type": "reply", "origin": origin_a, "by": "b"}))
        .await;
    cc.send_json(&json!({"type": "reply", "origin": origin_a, "by": "c"}))
        .await;
    let mut by = Vec::new();
    for _ in 0..2 {
        let r = a.recv_json().await;
        assert_eq!(r["type"], "reply", "{r}");
        by.push(r["by"].as_str().expect("by").to_string());
    }
    by.sort();
    assert_eq!(by, ["b", "c"]);
    // Replies go to the origin only.
    b.expect_silence(QUIET).await;
    cc.expect_silence(QUIET).await;

    // From node 1: a request reaches nodes 0 and 2, the reply from node 0 comes back.
    b.send_json(&json!({"type": "request", "q": 2})).await;
    let ra = a.recv_json().await;
    let rc = cc.recv_json().await;
    assert_eq!(ra["origin"], rc["origin"]);
    assert_ne!(ra["origin"].as_str(), Some(origin_a.as_str()));
    a.send_json(&json!({"type": "reply", "origin": ra["origin"], "answer": 42}))
        .await;
    let rep = b.recv_json().await;
    assert_eq!(rep["type"], "reply");
    assert_eq!(rep["answer"], 42);
    cc.expect_silence(QUIET).await;
    a.expect_silence(QUIET).await;

    // An origin that left is unknown everywhere.
    b.close(1000).await;
    drop(b);
    let deadline = Instant::now() + WAIT;
    loop {
        a.send_json(&json!({"type": "reply", "origin": ra["origin"]}))
            .await;
        match a.next_event(Duration::from_millis(500)).await {
            Some(Msg::Text(t)) if parse(&t)["error"] == "unknown_origin" => break,
            other => assert!(
                Instant::now() < deadline,
                "a reply to a departed origin on another node: {other:?}, not unknown_origin"
            ),
        }
    }
}

#[actix_rt::test]
async fn fan_in_out_round_robin_across_nodes_with_replies() {
    let c = Cluster::start(3, &[]).await;
    let ch = c.nodes[1].create(json!({"pattern": "fan-in-out"})).await;
    c.wait_visible(&ch.id).await;
    let mut boss = c.nodes[0].connect(&ch.id, &ch.token).await;
    let mut workers = Vec::new();
    for s in &c.nodes {
        workers.push(s.connect(&ch.id, &ch.token).await);
    }
    {
        let mut refs: Vec<&mut Ws> = workers.iter_mut().collect();
        warm_up(&mut boss, &mut refs, |k| {
            json!({"type": "request", "warm": k}).to_string()
        })
        .await;
    }
    let n = 30;
    for i in 0..n {
        boss.send_json(&json!({"type": "request", "job": i})).await;
    }
    let mut refs: Vec<&mut Ws> = workers.iter_mut().collect();
    let got = collect(&mut refs, n, Duration::from_secs(20)).await;
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(counts.iter().sum::<usize>(), n, "workers got {counts:?}");
    for k in &counts {
        assert!(
            (9..=11).contains(k),
            "unfair split over nodes 0,1,2: {counts:?}"
        );
    }
    let mut origin: Option<Value> = None;
    for (k, g) in got.iter().enumerate() {
        for t in g {
            let r = parse(t);
            assert_eq!(r["type"], "request", "{r}");
            match &origin {
                Some(o) => assert_eq!(&r["origin"], o, "one origin for one requester"),
                None => origin = Some(r["origin"].clone()),
            }
            workers[k]
                .send_json(
                    &json!({"type": "reply", "origin": r["origin"], "job": r["job"], "by": k}),
                )
                .await;
        }
    }
    let mut jobs = Vec::new();
    for _ in 0..n {
        let r = boss.recv_json().await;
        assert_eq!(r["type"], "reply", "{r}");
        jobs.push(r["job"].as_u64().expect("job"));
    }
    jobs.sort_unstable();
    assert_eq!(jobs, (0..n as u64).collect::<Vec<_>>());
    for w in workers.iter_mut() {
        w.expect_silence(QUIET).await;
    }
    boss.expect_silence(QUIET).await;
}

#[actix_rt::test]
async fn client_limit_is_cluster_wide() {
    let c = Cluster::start(3, &[]).await;
    let ch = c.nodes[0]
        .create(json!({"pattern": "pub-sub", "clientLimit": 2}))
        .await;
    c.wait_visible(&ch.id).await;
    let path = ch.connect_path();
    let mut a = c.nodes[0].ws(&path).await;
    let mut b = c.nodes[1].ws(&path).await;
    c.nodes[2]
        .raw_upgrade(&path)
        .await
        .assert_error(409, "client_limit_reached");
    c.nodes[0]
        .raw_upgrade(&path)
        .await
        .assert_error(409, "client_limit_reached");
    warm_up(&mut a, &mut [&mut b], |k| format!("warm {k}")).await;

    // A slot frees when one leaves, for a client on any node.
    b.close(1000).await;
    drop(b);
    let mut c2 = poll_until("a client on node 2 gets the free slot", WAIT, || async {
        c.nodes[2].try_ws(&path).await
    })
    .await;
    c.nodes[1]
        .raw_upgrade(&path)
        .await
        .assert_error(409, "client_limit_reached");
    warm_up(&mut a, &mut [&mut c2], |k| format!("warm {k}")).await;
    c2.send_text("from node 2").await;
    assert_eq!(a.recv_text().await, "from node 2");

    // Exact under a race: six clients on three nodes at once, limit 2: two get in.
    let ch = c.nodes[1]
        .create(json!({"pattern": "pub-sub", "clientLimit": 2}))
        .await;
    c.wait_visible(&ch.id).await;
    let path = ch.connect_path();
    let attempts = (0..6).map(|i| c.nodes[i % 3].try_ws(&path));
    let results = futures_util::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        ok,
        2,
        "racing connects with clientLimit 2: {:?}",
        results
            .iter()
            .map(|r| r.as_ref().map(|_| "101").map_err(String::as_str))
            .collect::<Vec<_>>()
    );
}

#[actix_rt::test]
async fn client_count_is_the_same_on_every_node() {
    let c = Cluster::start(3, &[]).await;
    let ch = c.nodes[0].create(json!({"pattern": "pub-sub"})).await;
    c.wait_visible(&ch.id).await;
    let mut clients = vec![
        c.nodes[0].connect(&ch.id, &ch.token).await,
        c.nodes[1].connect(&ch.id, &ch.token).await,
        c.nodes[1].connect(&ch.id, &ch.token).await,
        c.nodes[2].connect(&ch.id, &ch.token).await,
    ];
    for want in [4i64, 3] {
        for (i, s) in c.nodes.iter().enumerate() {
            let what = format!("GET /channels/{} on node {i} counts {want} clients", ch.id);
            poll_until(&what, WAIT, || async {
                let n = s.clients(&ch.id).await;
                if n == want {
                    Ok(())
                } else {
                    Err(format!("clients = {n}"))
                }
            })
            .await;
        }
        let mut gone = clients.remove(1);
        gone.close(1000).await;
    }
}

#[actix_rt::test]
async fn delete_and_reset_close_clients_on_every_node_with_4000() {
    let c = Cluster::start(3, &[]).await;
    let ch = c.nodes[2].create(json!({"pattern": "pub-sub"})).await;
    c.wait_visible(&ch.id).await;
    let mut clients = [
        c.nodes[0].connect(&ch.id, &ch.token).await,
        c.nodes[1].connect(&ch.id, &ch.token).await,
        c.nodes[1].connect(&ch.id, &ch.token).await,
        c.nodes[2].connect(&ch.id, &ch.token).await,
    ];
    {
        let (first, rest) = clients.split_first_mut().expect("clients");
        let mut refs: Vec<&mut Ws> = rest.iter_mut().collect();
        warm_up(first, &mut refs, |k| format!("warm {k}")).await;
    }
    let r = c.nodes[0].delete(&format!("/channels/{}", ch.id)).await;
    assert_eq!(r.status, 200, "DELETE: {}", r.text());
    for (i, w) in clients.iter_mut().enumerate() {
        let reason = w.expect_close(4000, WAIT).await;
        assert_eq!(reason, "channel deleted", "client {i}");
    }
    for s in &c.nodes {
        poll_until("the deleted channel refuses connections", WAIT, || async {
            let up = s.raw_upgrade(&ch.connect_path()).await;
            if up.status == 404 {
                Ok(())
            } else {
                Err(format!("status {}", up.status))
            }
        })
        .await;
    }

    // DELETE /reset on node 1 closes the clients of nodes 0 and 2.
    let ch = c.nodes[0].create(json!({"pattern": "echo"})).await;
    c.wait_visible(&ch.id).await;
    let mut x = c.nodes[0].connect(&ch.id, &ch.token).await;
    let mut z = c.nodes[2].connect(&ch.id, &ch.token).await;
    for w in [&mut x, &mut z] {
        w.send_text("ping").await;
        assert_eq!(w.recv_text().await, "ping");
    }
    let r = c.nodes[1].delete("/reset").await;
    assert_eq!(r.status, 200, "DELETE /reset: {}", r.text());
    x.expect_close(4000, WAIT).await;
    z.expect_close(4000, WAIT).await;
}

#[actix_rt::test]
async fn activity_on_any_node_keeps_a_channel_alive() {
    let c = Cluster::start(3, &[]).await;
    // Three channels (timeout 1500 ms), each with one client on every node; in channel k only
    // the client on node k talks, for 4 s. Whatever node owns a channel, at least two of the
    // three are kept alive only by traffic through a node that does not own them.
    let mut chans = Vec::new();
    for k in 0..3 {
        let ch = c.nodes[0]
            .create(json!({"pattern": "echo", "timeout": 1500}))
            .await;
        let mut ws = vec![c.nodes[0].connect(&ch.id, &ch.token).await];
        c.wait_visible(&ch.id).await;
        for s in &c.nodes[1..] {
            ws.push(s.connect(&ch.id, &ch.token).await);
        }
        // The talker runs on its own from here: 4 s of one echo every 300 ms.
        let mut talker = ws.remove(k);
        let id = ch.id.clone();
        let task = actix_rt::spawn(async move {
            let until = Instant::now() + Duration::from_secs(4);
            let mut n = 0;
            while Instant::now() < until {
                let t = format!("tick {n}");
                talker.send_text(&t).await;
                match talker.next_event(WAIT).await {
                    Some(Msg::Text(got)) if got == t => {}
                    other => {
                        return Err(format!(
                            "channel {id} (talker on node {k}) after {n} ticks got {other:?}"
                        ))
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok(talker)
        });
        chans.push((ch, ws, task));
    }
    let mut all = Vec::new();
    for (k, (ch, mut idle, task)) in chans.into_iter().enumerate() {
        let talker = task
            .await
            .expect("talker task")
            .unwrap_or_else(|e| panic!("{e}"));
        for w in idle.iter_mut() {
            w.expect_silence(Duration::from_millis(10)).await;
        }
        for s in &c.nodes {
            let r = s.get(&format!("/channels/{}", ch.id)).await;
            assert_eq!(
                r.status,
                200,
                "channel {} (talker on node {k}) is gone on {} after 4 s of traffic: {}",
                ch.id,
                s.address(),
                r.text()
            );
        }
        idle.insert(k, talker);
        all.push((ch, idle));
    }
    // Silence: now every channel times out, closing its clients on every node with 4001.
    for (ch, ws) in all.iter_mut() {
        for (j, w) in ws.iter_mut().enumerate() {
            let reason = w.expect_close(4001, WAIT).await;
            assert_eq!(reason, "channel timed out", "channel {} node {j}", ch.id);
        }
    }
}
