//! Cluster (REQUIREMENTS §5, NFR11): several real `wrs` processes on loopback ports forming a
//! Raft cluster — joining (by `WRS_JOIN` and by `POST /cluster/join`), leaving on SIGTERM,
//! replicated channels, leader failover, removal of dead members, catch-up through a snapshot,
//! restarts, loss of the majority and the cluster secret. Every test runs its own cluster and
//! waits by polling against deadlines.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wrs_test_support::*;

/// A few election timeouts of [`FAST_RAFT`] (800–1200 ms), with room for a loaded machine.
const FAILOVER: Duration = Duration::from_secs(10);

/// A standalone node (no `WRS_JOIN`) with the test secret and fast Raft timing.
async fn standalone(extra: &[(&str, &str)]) -> Server {
    let env = cluster_env(extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start(&env).await
}

/// Poll until this node alone is its cluster's leader (a one-node cluster that works).
async fn wait_alone_and_leader(s: &Server) {
    poll_until("the node serves as a cluster of one", FORM, || async {
        let v = s.try_cluster_view().await.ok_or("no GET /cluster")?;
        let id = v["id"].as_u64();
        if view_ids(&v).len() == 1 && v["leader"].as_u64() == id && id.is_some() {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await
}

/// Poll until `GET /channels/{id}` on `s` answers `status`; returns the body.
async fn wait_channel_status(s: &Server, id: &str, status: u16) -> Value {
    let what = format!("GET /channels/{id} on {} answers {status}", s.address());
    poll_until(&what, WAIT, || async {
        let r = s
            .try_request("GET", &format!("/channels/{id}"), None, WAIT)
            .await?;
        if r.status == status {
            Ok(r.json())
        } else {
            Err(format!("{} {}", r.status, r.text()))
        }
    })
    .await
}

/// Poll until `GET /channels` on `s` lists exactly `ids` (sorted).
async fn wait_channel_list(s: &Server, ids: &[String], limit: Duration) {
    let mut want = ids.to_vec();
    want.sort();
    let what = format!(
        "GET /channels on {} lists the {} channels",
        s.address(),
        ids.len()
    );
    poll_until(&what, limit, || async {
        let r = s.try_request("GET", "/channels", None, WAIT).await?;
        if r.status != 200 {
            return Err(format!("{} {}", r.status, r.text()));
        }
        let mut got: Vec<String> = r.json()["data"]
            .as_array()
            .ok_or("data is not an array")?
            .iter()
            .filter_map(|c| c["id"].as_str().map(str::to_string))
            .collect();
        got.sort();
        if got == want {
            Ok(())
        } else {
            Err(format!("listed {got:?}, want {want:?}"))
        }
    })
    .await
}

/// A replicated channel must look the same on every node, and no GET shows the token.
fn assert_same_channel(created: &Created, seen: &Value, on: &str) {
    let want = &created.body["data"];
    let got = &seen["data"];
    for k in [
        "id",
        "pattern",
        "clientLimit",
        "timeout",
        "includeSender",
        "createdAt",
    ] {
        assert_eq!(
            got[k], want[k],
            "channel field {k} differs on {on}: {got} vs {want}"
        );
    }
    assert!(
        !seen.to_string().contains(&created.token),
        "GET on {on} shows the token: {seen}"
    );
    assert!(
        seen["token"].is_null(),
        "GET on {on} has a token field: {seen}"
    );
}

/// An HTTP server that is not wrs: answers every request with 200 `{}`.
fn fake_http_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in l.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
                  Connection: close\r\n\r\n{}",
            );
        }
    });
    port
}

// 5.1.1
#[actix_rt::test]
async fn join_to_an_address_without_wrs_is_502_and_the_node_keeps_serving() {
    let s = standalone(&[]).await;
    wait_alone_and_leader(&s).await;
    let nobody = free_port();
    let fake = fake_http_server();
    for target in [format!("127.0.0.1:{nobody}"), format!("127.0.0.1:{fake}")] {
        let started = Instant::now();
        let r = s
            .request("POST", &format!("/cluster/join/{target}"), &[], None)
            .await;
        r.assert_error(502, "join_failed");
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "POST /cluster/join/{target} took {:?}",
            started.elapsed()
        );
        // Still a working cluster of one.
        wait_alone_and_leader(&s).await;
        let c = s.create(json!({"pattern": "echo"})).await;
        let mut ws = s.connect(&c.id, &c.token).await;
        ws.send_text("still here").await;
        assert_eq!(ws.recv_text().await, "still here");
        assert_eq!(s.get("/readyz").await.status, 200);
        assert_eq!(s.delete(&format!("/channels/{}", c.id)).await.status, 200);
    }
}

// 5.1.2
#[actix_rt::test]
async fn manual_join_forms_a_two_node_cluster() {
    let a = standalone(&[]).await;
    let b = standalone(&[]).await;
    wait_alone_and_leader(&a).await;
    wait_alone_and_leader(&b).await;
    let join_a = format!("/cluster/join/{}", a.address());

    // A node with channels of its own may not join.
    let own = b.create(json!({"pattern": "pub-sub"})).await;
    b.request("POST", &join_a, &[], None)
        .await
        .assert_error(409, "cluster_conflict");
    assert_eq!(b.delete(&format!("/channels/{}", own.id)).await.status, 200);

    let r = b.request("POST", &join_a, &[], None).await;
    assert_eq!(r.status, 200, "POST {join_a} on B: {}", r.text());
    let views = wait_one_cluster(&[&a, &b], FORM).await;
    assert_eq!(view_ids(&views[0]).len(), 2);

    // One service: a channel created on A is visible on B, and the other way round.
    let on_a = a.create(json!({"pattern": "echo", "timeout": 60000})).await;
    let seen = wait_channel_status(&b, &on_a.id, 200).await;
    assert_same_channel(&on_a, &seen, "B");
    let on_b = b.create(json!({"pattern": "push-pull"})).await;
    let seen = wait_channel_status(&a, &on_b.id, 200).await;
    assert_same_channel(&on_b, &seen, "A");

    // Already in a multi-node cluster: another join is refused, on either side.
    b.request("POST", &join_a, &[], None)
        .await
        .assert_error(409, "cluster_conflict");
    a.request("POST", &format!("/cluster/join/{}", b.address()), &[], None)
        .await
        .assert_error(409, "cluster_conflict");
    wait_one_cluster(&[&a, &b], FORM).await;
}

// 5.1.3
#[actix_rt::test]
async fn three_nodes_started_together_form_exactly_one_cluster() {
    // Twice, and in both spawn orders: the node that starts the cluster (smallest address)
    // first, then last.
    for reverse in [false, true] {
        let c = Cluster::start_in_order(3, &[], reverse).await;
        // Cluster::start already waited for one agreed cluster; look once more, a moment later,
        // that it is stable and that writes work through every node.
        let views = c.wait_formed().await;
        let leader = views[0]["leader"].as_u64();
        for (i, v) in views.iter().enumerate() {
            assert_eq!(
                view_ids(v).len(),
                3,
                "order reverse={reverse}, node {i}: {v}"
            );
            assert_eq!(v["leader"].as_u64(), leader);
        }
        let mut ids = Vec::new();
        for s in &c.nodes {
            ids.push(s.create(json!({"pattern": "echo"})).await.id);
        }
        for s in &c.nodes {
            wait_channel_list(s, &ids, WAIT).await;
            assert_eq!(s.get("/readyz").await.status, 200);
        }
        // The leader measures the peer round trip from its heartbeats (for the dashboard).
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let mut rtts = 0.0;
            for s in &c.nodes {
                let text = s.get("/metrics").await.text();
                rtts += text
                    .lines()
                    .find_map(|l| l.strip_prefix("wrs_peer_rtt_seconds_count "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .expect("wrs_peer_rtt_seconds_count is exposed");
            }
            if rtts > 0.0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no heartbeat round trip measured"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// 5.1.4
#[actix_rt::test]
async fn sigterm_makes_a_follower_leave_and_exit_0() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.leader_index().await;
    let f = (leader + 1) % 3;
    let gone = c.nodes[f].node_id().await;
    c.nodes[f].sigterm();
    let started = Instant::now();
    let status = c.nodes[f]
        .wait_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("the follower did not exit within 15 s of SIGTERM"));
    assert!(status.success(), "the follower exited with {status}");
    let rest = c.others(&[f]);
    let views = wait_one_cluster(&rest, FORM).await;
    for v in &views {
        assert!(
            !view_ids(v).contains(&gone),
            "the leaver {gone} is still listed: {v}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the remaining nodes listed 2 members only after {:?}",
        started.elapsed()
    );
    // The rest keeps working.
    let ch = rest[0].create(json!({"pattern": "echo"})).await;
    wait_channel_status(rest[1], &ch.id, 200).await;
}

// 5.1.4, the harder case: the leader itself leaves on SIGTERM.
#[actix_rt::test]
async fn sigterm_makes_the_leader_leave_and_the_rest_elect_a_new_one() {
    let mut c = Cluster::start(3, &[]).await;
    let kept = c.nodes[0].create(json!({"pattern": "echo"})).await;
    let l = c.leader_index().await;
    let gone = c.nodes[l].node_id().await;
    c.nodes[l].sigterm();
    let status = c.nodes[l]
        .wait_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("the leader did not exit within 15 s of SIGTERM"));
    assert!(status.success(), "the leader exited with {status}");
    let rest = c.others(&[l]);
    let views = wait_one_cluster(&rest, FORM).await;
    for v in &views {
        assert!(
            !view_ids(v).contains(&gone),
            "the leaver {gone} is still listed: {v}"
        );
        assert_ne!(v["leader"].as_u64(), Some(gone));
    }
    wait_channel_list(rest[0], std::slice::from_ref(&kept.id), WAIT).await;
    let ch = rest[1].create(json!({"pattern": "echo"})).await;
    wait_channel_status(rest[0], &ch.id, 200).await;
}

// 5.2.1: replication both ways, delete everywhere, token only in the create response.
#[actix_rt::test]
async fn channels_replicate_across_all_nodes() {
    let c = Cluster::start(3, &[]).await;
    let (a, b, cc) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);

    let on_a = a
        .create(json!({"pattern": "pub-sub", "clientLimit": 7, "timeout": 120000, "includeSender": true}))
        .await;
    // Answered after commit: the node that answered already shows it.
    let local = a.get(&format!("/channels/{}", on_a.id)).await;
    assert_eq!(local.status, 200, "read-your-write on A: {}", local.text());
    for (name, s) in [("B", b), ("C", cc)] {
        let seen = wait_channel_status(s, &on_a.id, 200).await;
        assert_same_channel(&on_a, &seen, name);
    }

    let on_c = cc
        .create(json!({"pattern": "req-repl", "timeout": -1}))
        .await;
    let local = cc.get(&format!("/channels/{}", on_c.id)).await;
    assert_eq!(local.status, 200, "read-your-write on C: {}", local.text());
    for (name, s) in [("A", a), ("B", b)] {
        let seen = wait_channel_status(s, &on_c.id, 200).await;
        assert_same_channel(&on_c, &seen, name);
    }
    let both = vec![on_a.id.clone(), on_c.id.clone()];
    for s in &c.nodes {
        wait_channel_list(s, &both, WAIT).await;
        let list = s.get("/channels").await;
        for t in [&on_a.token, &on_c.token] {
            assert!(
                !list.text().contains(t.as_str()),
                "GET /channels shows a token"
            );
        }
    }

    // Delete on B: gone everywhere (at once on B).
    let r = b.delete(&format!("/channels/{}", on_a.id)).await;
    assert_eq!(r.status, 200, "DELETE on B: {}", r.text());
    b.get(&format!("/channels/{}", on_a.id))
        .await
        .assert_error(404, "channel_not_found");
    for s in &c.nodes {
        wait_channel_status(s, &on_a.id, 404).await;
        wait_channel_list(s, std::slice::from_ref(&on_c.id), WAIT).await;
    }
    // A second delete of the same channel is 404 on any node.
    a.delete(&format!("/channels/{}", on_a.id))
        .await
        .assert_error(404, "channel_not_found");

    // Reset on C deletes everything everywhere.
    let r = cc.delete("/reset").await;
    assert_eq!(r.status, 200, "DELETE /reset on C: {}", r.text());
    for s in &c.nodes {
        wait_channel_list(s, &[], WAIT).await;
    }
}

// 5.2.1: leader loss, no committed channel lost; removal of the dead node.
#[actix_rt::test]
async fn leader_crash_elects_a_new_leader_and_loses_no_channel() {
    let mut c = Cluster::start(3, &[]).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(c.nodes[i % 3].create(json!({"pattern": "echo"})).await.id);
    }
    for s in &c.nodes {
        wait_channel_list(s, &ids, WAIT).await;
    }
    let l = c.leader_index().await;
    let old = c.nodes[l].node_id().await;
    c.nodes[l].kill_hard();
    let killed = Instant::now();

    // A new leader among the survivors, agreed by both.
    let rest = c.others(&[l]);
    let new_leader = poll_until("a new leader among the survivors", FAILOVER, || async {
        let mut leaders = Vec::new();
        for s in &rest {
            let v = s.try_cluster_view().await.ok_or("no view")?;
            leaders.push(v["leader"].as_u64());
        }
        match leaders[0] {
            Some(id) if id != old && leaders.iter().all(|x| *x == Some(id)) => Ok(id),
            _ => Err(format!("leaders seen: {leaders:?} (old {old})")),
        }
    })
    .await;
    let took = killed.elapsed();
    let mut survivor_ids = Vec::new();
    for s in &rest {
        survivor_ids.push(s.node_id().await);
    }
    assert!(
        survivor_ids.contains(&new_leader),
        "leader {new_leader} is not a survivor"
    );
    eprintln!("failover took {took:?}");

    // Every committed channel is still there; new writes work through both survivors.
    for s in &rest {
        wait_channel_list(s, &ids, WAIT).await;
    }
    for s in &rest {
        let ch = s.create(json!({"pattern": "pub-sub"})).await;
        ids.push(ch.id);
    }
    for s in &rest {
        wait_channel_list(s, &ids, WAIT).await;
        assert_eq!(s.get("/readyz").await.status, 200);
    }

    // The dead node is still a member until removed; then it is gone from every view.
    for s in &rest {
        assert!(view_ids(&s.cluster_view().await).contains(&old));
    }
    let r = rest[0].delete(&format!("/cluster/{old}")).await;
    assert_eq!(r.status, 200, "DELETE /cluster/{old}: {}", r.text());
    let views = wait_one_cluster(&rest, FORM).await;
    assert!(!view_ids(&views[1]).contains(&old));
    rest[1]
        .delete(&format!("/cluster/{old}"))
        .await
        .assert_error(404, "node_not_found");
    rest[0]
        .delete("/cluster/12345")
        .await
        .assert_error(404, "node_not_found");
    rest[0]
        .delete("/cluster/not-a-number")
        .await
        .assert_error(404, "node_not_found");
    // A cluster of two still commits.
    let ch = rest[1].create(json!({"pattern": "echo"})).await;
    wait_channel_status(rest[0], &ch.id, 200).await;
}

// 5.2.1: a node added after log compaction catches up through a snapshot.
#[actix_rt::test]
async fn a_late_node_catches_up_through_a_snapshot() {
    let mut c = Cluster::start(3, &[("WRS_NODE_SNAPSHOT_LENGTH", "5")]).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(c.nodes[i % 3].create(json!({"pattern": "echo"})).await.id);
    }
    for s in &c.nodes {
        wait_channel_list(s, &ids, WAIT).await;
    }
    let applied_before = c.nodes[0].cluster_view().await["appliedIndex"].as_u64();
    let d = c.add_node().await;
    c.wait_formed().await;
    assert_eq!(c.nodes.len(), 4);
    wait_channel_list(&c.nodes[d], &ids, FORM).await;
    let v = c.nodes[d].cluster_view().await;
    assert!(
        v["appliedIndex"].as_u64() >= applied_before,
        "the new node applied {} < {applied_before:?}",
        v["appliedIndex"]
    );
    // It takes part: a write through it is seen everywhere, including a delete.
    let ch = c.nodes[d].create(json!({"pattern": "pub-sub"})).await;
    ids.push(ch.id.clone());
    for s in &c.nodes {
        wait_channel_list(s, &ids, WAIT).await;
    }
    assert_eq!(
        c.nodes[d]
            .delete(&format!("/channels/{}", ids[0]))
            .await
            .status,
        200
    );
    ids.remove(0);
    for s in &c.nodes {
        wait_channel_list(s, &ids, WAIT).await;
    }
}

// 5.2.1: a crashed node restarted on the same ports rejoins under a new id.
#[actix_rt::test]
async fn a_restarted_node_rejoins_under_a_new_id() {
    let mut c = Cluster::start(3, &[]).await;
    let before = c.nodes[0].create(json!({"pattern": "echo"})).await.id;
    let l = c.leader_index().await;
    let r = (l + 2) % 3;
    let old = c.nodes[r].node_id().await;
    c.nodes[r].kill_hard();
    // Written while it is down.
    let survivor = (r + 1) % 3;
    let during = c.nodes[survivor]
        .create(json!({"pattern": "pub-sub"}))
        .await
        .id;
    c.restart(r).await;
    let views = c.wait_formed().await;
    let new = views[r]["id"].as_u64().expect("id");
    assert_ne!(new, old, "the restarted node kept its old id");
    for v in &views {
        let ids = view_ids(v);
        assert!(!ids.contains(&old), "old id {old} still listed: {v}");
        assert!(ids.contains(&new), "new id {new} not listed: {v}");
        assert_eq!(ids.len(), 3, "{v}");
    }
    wait_channel_list(&c.nodes[r], &[before, during], FORM).await;
    let ch = c.nodes[r].create(json!({"pattern": "echo"})).await;
    for s in &c.nodes {
        wait_channel_status(s, &ch.id, 200).await;
    }
}

// 5.2.1: without a majority, writes fail fast with 503 and the node is not ready.
#[actix_rt::test]
async fn losing_the_majority_answers_503_quickly() {
    let mut c = Cluster::start(3, &[]).await;
    let kept = c.nodes[1].create(json!({"pattern": "echo"})).await;
    let l = c.leader_index().await;
    // The survivor is a follower: it still believes in the (dead) leader for a moment.
    let survivor = (l + 1) % 3;
    for i in 0..3 {
        if i != survivor {
            c.nodes[i].kill_hard();
        }
    }
    let s = &c.nodes[survivor];
    let limit = Duration::from_millis(6500);
    let started = Instant::now();
    let r = s
        .try_request(
            "POST",
            "/channels",
            Some(&json!({"pattern": "echo"})),
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|e| panic!("POST /channels without a majority: {e}"));
    let took = started.elapsed();
    r.assert_error(503, "cluster_unavailable");
    assert!(
        took < limit,
        "POST /channels without a majority took {took:?}"
    );

    // Soon the node sees no leader: not ready, and writes keep failing fast.
    poll_until("/readyz turns 503", FORM, || async {
        let r = s.try_request("GET", "/readyz", None, WAIT).await?;
        if r.status == 503 {
            Ok(())
        } else {
            Err(format!("{} {}", r.status, r.text()))
        }
    })
    .await;
    s.get("/readyz").await.assert_error(503, "no_leader");
    for (method, path, body) in [
        (
            "POST",
            "/channels".to_string(),
            Some(json!({"pattern": "pub-sub"})),
        ),
        ("DELETE", format!("/channels/{}", kept.id), None),
        ("DELETE", "/reset".to_string(), None),
    ] {
        let started = Instant::now();
        let r = s
            .try_request(method, &path, body.as_ref(), Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{method} {path} without a majority: {e}"));
        let took = started.elapsed();
        r.assert_error(503, "cluster_unavailable");
        assert!(
            took < limit,
            "{method} {path} without a majority took {took:?}"
        );
    }
    // Nothing was deleted, and the cluster view still answers.
    let v = s.cluster_view().await;
    assert!(
        v["leader"].is_null(),
        "a lone survivor of three has no leader: {v}"
    );
    assert_eq!(view_ids(&v).len(), 3, "{v}");
}

// 5.2.1: a node with the wrong cluster secret never becomes a member.
#[actix_rt::test]
async fn a_wrong_cluster_secret_is_not_admitted() {
    let good = standalone(&[]).await;
    wait_alone_and_leader(&good).await;
    let good_id = good.node_id().await;
    let wrong = [("WRS_CLUSTER_SECRET", "not-the-secret-of-that-cluster")];

    // Explicit join: refused, and the node serves alone again.
    let bad = standalone(&wrong).await;
    wait_alone_and_leader(&bad).await;
    let bad_id = bad.node_id().await;
    bad.request(
        "POST",
        &format!("/cluster/join/{}", good.address()),
        &[],
        None,
    )
    .await
    .assert_error(502, "join_failed");
    wait_alone_and_leader(&bad).await;
    bad.create(json!({"pattern": "echo"})).await;

    // Automatic join through WRS_JOIN, from a node that must not start a cluster itself (its
    // address sorts after the good node's), and one without any secret.
    let mut lurkers = Vec::new();
    for secret in [Some("another-wrong-secret"), None] {
        let mut env = cluster_env(&[]);
        match secret {
            Some(sv) => env.push(("WRS_CLUSTER_SECRET".into(), sv.into())),
            None => env.retain(|(k, _)| k != "WRS_CLUSTER_SECRET"),
        }
        let (mut api, mut node) = (free_port(), free_port());
        while format!("127.0.0.1:{api}") <= good.address() || api == node {
            api = free_port();
            node = free_port();
        }
        env.push((
            "WRS_JOIN".into(),
            format!("{},127.0.0.1:{api}", good.address()),
        ));
        let mut s = Server::spawn_on(api, node, &env);
        if let Err(e) = s.wait_up(FORM).await {
            panic!("the lurker did not start: {e}\n{}", s.logs());
        }
        lurkers.push(s);
    }
    // Several discovery rounds (every ~300 ms): nobody gets in.
    let watch = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch {
        let v = good.cluster_view().await;
        assert_eq!(
            view_ids(&v),
            vec![good_id],
            "the good cluster admitted someone: {v}"
        );
        assert_eq!(v["leader"].as_u64(), Some(good_id));
        for s in lurkers.iter().chain([&bad]) {
            if let Some(lv) = s.try_cluster_view().await {
                assert!(
                    !view_ids(&lv).contains(&good_id),
                    "{} considers itself in the good cluster: {lv}",
                    s.address()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!view_ids(&good.cluster_view().await).contains(&bad_id));
    // The good node still works.
    let ch = good.create(json!({"pattern": "echo"})).await;
    wait_channel_status(&good, &ch.id, 200).await;
}
