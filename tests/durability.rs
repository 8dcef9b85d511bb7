//! Channels survive restarts (`WRS_DATA_DIR`), end to end: a single node killed with `kill -9`
//! comes back with every channel, its configuration and tokens, and without the deleted ones;
//! no acknowledged create is lost to a kill at any moment; a cluster member restarted on its
//! directory is the same member; a whole cluster killed at once comes back; a damaged or
//! foreign directory stops the start with a message naming it. Each test prints what it
//! injected and what it counted.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wrs_test_support::*;

fn data_env(dir: &std::path::Path) -> (String, String) {
    ("WRS_DATA_DIR".into(), dir.display().to_string())
}

async fn start_on(dir: &std::path::Path) -> Server {
    let (k, v) = data_env(dir);
    Server::start(&[(k.as_str(), v.as_str())]).await
}

/// The fields a restart must keep, from `GET /channels/{id}`'s `data`.
fn config_of(v: &Value) -> Value {
    json!({
        "pattern": v["pattern"],
        "clientLimit": v["clientLimit"],
        "timeout": v["timeout"],
        "includeSender": v["includeSender"],
        "createdAt": v["createdAt"],
    })
}

/// The start failed (non-zero exit) and its message names the directory and `what` is wrong.
fn refused(out: &Exit, path: &str, what: &str, says: &str) {
    assert!(
        out.code.is_some_and(|c| c != 0),
        "exit {:?}: {}",
        out.code,
        out.stderr
    );
    assert!(
        out.stderr.contains(path) && out.stderr.contains(what),
        "{says}{}",
        out.stderr
    );
}

#[actix_rt::test]
async fn a_single_node_killed_with_kill_9_comes_back_with_every_channel_config_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_on(dir.path()).await;
    let id_before = s.node_id().await;
    let bodies = [
        json!({"pattern": "echo", "clientLimit": 2}),
        json!({"pattern": "pub-sub", "timeout": 600000, "includeSender": true}),
        json!({"pattern": "push-pull", "clientLimit": 5, "timeout": 120000}),
        json!({"pattern": "req-repl"}),
        json!({"pattern": "fan-in-out", "clientLimit": 3}),
    ];
    let mut created = Vec::new();
    for b in &bodies {
        let c = s.create(b.clone()).await;
        created.push((c.clone(), config_of(&s.channel(&c.id).await)));
    }
    let gone = s.create(json!({"pattern": "echo"})).await;
    assert_eq!(
        s.delete(&format!("/channels/{}", gone.id)).await.status,
        200
    );
    eprintln!(
        "created {} channels (every pattern, limits, timeouts), deleted {}; kill -9 node {id_before}",
        created.len(),
        gone.id
    );
    s.kill_hard();
    drop(s);

    // New ports: the node also tells its (one-node) cluster where it listens now.
    let s = start_on(dir.path()).await;
    assert_eq!(
        s.node_id().await,
        id_before,
        "the same node id after the restart"
    );
    for (c, config) in &created {
        let res = s.get(&format!("/channels/{}", c.id)).await;
        assert_eq!(
            res.status,
            200,
            "channel {} after the restart: {}",
            c.id,
            res.text()
        );
        assert_eq!(
            &config_of(&res.json()["data"]),
            config,
            "channel {} config",
            c.id
        );
    }
    s.get(&format!("/channels/{}", gone.id))
        .await
        .assert_error(404, "channel_not_found");
    s.raw_upgrade(&format!(
        "/channels/{}/connect?token=wrong",
        created[0].0.id
    ))
    .await
    .assert_error(403, "invalid_token");
    // Old tokens connect and messages flow.
    let echo = &created[0].0;
    let mut e = s.ws(&echo.connect_path()).await;
    e.send_text("still here").await;
    assert_eq!(e.recv_text().await, "still here");
    let ps = &created[1].0;
    let mut a = s.ws(&ps.connect_path()).await;
    let mut b = s.ws(&ps.connect_path()).await;
    s.wait_clients(&ps.id, 2, WAIT).await;
    a.send_text("to everyone").await;
    assert_eq!(b.recv_text().await, "to everyone");
    assert_eq!(a.recv_text().await, "to everyone", "includeSender kept");
    // The client limit is kept too.
    let _e2 = s.ws(&echo.connect_path()).await;
    s.raw_upgrade(&echo.connect_path())
        .await
        .assert_error(409, "client_limit_reached");
    let view = poll_until("GET /cluster shows the new address", WAIT, || async {
        let v = s.cluster_view().await;
        let addr = v["nodes"][0]["address"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if addr == s.address() {
            Ok(v)
        } else {
            Err(format!("still {addr}"))
        }
    })
    .await;
    eprintln!(
        "restarted on new ports: node {} at {}, {} channels back, tokens work, deleted one stays deleted",
        view["id"],
        s.address(),
        created.len()
    );
}

#[actix_rt::test]
async fn every_create_acknowledged_before_a_kill_9_is_there_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_on(dir.path()).await;
    let base = s.url("/channels");
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (base, acked) = (base.clone(), acked.clone());
        tasks.push(actix_rt::spawn(async move {
            let client = http_client(false);
            loop {
                let body = json!({"pattern": "pub-sub"});
                let Ok(r) = request_with(&client, &base, "POST", Some(&body), WAIT).await else {
                    return;
                };
                if r.status != 201 {
                    return;
                }
                let id = r.json()["data"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                acked.lock().unwrap().push(id);
            }
        }));
    }
    poll_until(
        "a few hundred creates acknowledged",
        Duration::from_secs(20),
        || async {
            let n = acked.lock().unwrap().len();
            if n >= 300 {
                Ok(())
            } else {
                Err(format!("{n} so far"))
            }
        },
    )
    .await;
    s.kill_hard();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    drop(s);
    let s = start_on(dir.path()).await;
    let ids = s.channel_ids().await;
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| ids.binary_search(id).is_err())
        .collect();
    eprintln!(
        "kill -9 while 8 clients created channels: {} acknowledged, {} listed after the restart, {} missing",
        acked.len(),
        ids.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

#[actix_rt::test]
async fn a_damaged_or_foreign_data_dir_stops_the_start_naming_the_path() {
    // A directory that holds something wrs did not write.
    let foreign = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(foreign.path().join("raft")).unwrap();
    std::fs::write(foreign.path().join("raft").join("pg_control"), b"not ours").unwrap();
    let path = foreign.path().display().to_string();
    let out = run_with_env(&[("WRS_DATA_DIR", path.as_str())]).await;
    refused(
        &out,
        &path,
        "pg_control",
        "stderr names the path and the file: ",
    );

    // A used directory whose log file was truncated.
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_on(dir.path()).await;
    s.create_channel("echo").await;
    s.kill_hard();
    drop(s);
    let raft = dir.path().join("raft");
    let mut truncated = 0;
    for f in std::fs::read_dir(&raft).unwrap().flatten() {
        if f.file_name().to_string_lossy().ends_with(".raftlog") {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(f.path())
                .unwrap();
            file.set_len(7).unwrap();
            truncated += 1;
        }
    }
    assert!(
        truncated > 0,
        "a log file to truncate in {}",
        raft.display()
    );
    let path = dir.path().display().to_string();
    for attempt in 1..=2 {
        let out = run_with_env(&[("WRS_DATA_DIR", path.as_str())]).await;
        eprintln!(
            "truncated {truncated} log file(s); start {attempt}: exit {:?}",
            out.code
        );
        refused(
            &out,
            &path,
            "identity",
            "stderr names the path and the damage: ",
        );
    }
}

async fn metric(s: &Server, name: &str) -> f64 {
    let r = s.get("/metrics").await;
    r.text()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

fn member_ids(view: &Value) -> Vec<u64> {
    let mut ids = view_ids(view);
    ids.sort_unstable();
    ids
}

#[actix_rt::test]
async fn a_member_killed_and_restarted_on_its_data_dir_is_the_same_member() {
    let mut c = Cluster::start_durable(3, &[]).await;
    let leader = c.leader_index().await;
    let victim = (leader + 1) % 3;
    let members_before = member_ids(&c.nodes[leader].cluster_view().await);
    let victim_id = c.nodes[victim].node_id().await;
    let before = c.nodes[leader].create(json!({"pattern": "pub-sub"})).await;
    c.nodes[victim].kill_hard();
    eprintln!("kill -9 node {victim} (id {victim_id}, a follower)");
    // Written while it is down: it must catch up from the leader.
    let during = c.nodes[leader].create(json!({"pattern": "echo"})).await;
    let started = Instant::now();
    c.restart(victim).await;
    let views = c.wait_formed().await;
    eprintln!(
        "node {victim} restarted on its directory; one cluster again after {:?}",
        started.elapsed()
    );
    assert_eq!(
        c.nodes[victim].node_id().await,
        victim_id,
        "the same id in GET /cluster"
    );
    for v in &views {
        assert_eq!(member_ids(v), members_before, "the same members: {v}");
    }
    for (i, s) in c.nodes.iter().enumerate() {
        assert_eq!(
            metric(s, "wrs_cluster_removals_total").await,
            0.0,
            "no removal seen by node {i}"
        );
        assert_eq!(
            metric(s, "wrs_cluster_rejoins_total").await,
            0.0,
            "no rejoin on node {i}"
        );
    }
    for ch in [&before, &during] {
        let mut ws = poll_until(
            &format!("channel {} connectable on the restarted node", ch.id),
            WAIT,
            || async { c.nodes[victim].try_ws(&ch.connect_path()).await },
        )
        .await;
        if ch.id == during.id {
            ws.send_text("ping").await;
            assert_eq!(ws.recv_text().await, "ping");
        }
    }
    eprintln!(
        "same id {victim_id}, members unchanged {members_before:?}, both channels served by it"
    );
}

#[actix_rt::test]
async fn a_whole_cluster_killed_at_once_comes_back_with_every_channel() {
    let mut c = Cluster::start_durable(3, &[]).await;
    let mut created = Vec::new();
    for i in 0..9 {
        let pattern = ["echo", "pub-sub", "push-pull"][i % 3];
        created.push(c.nodes[i % 3].create(json!({ "pattern": pattern })).await);
    }
    let ids_before: Vec<u64> = {
        let mut v = Vec::new();
        for s in &c.nodes {
            v.push(s.node_id().await);
        }
        v
    };
    for s in c.nodes.iter_mut() {
        s.kill_hard();
    }
    eprintln!(
        "created {} channels through all three nodes; kill -9 all three",
        created.len()
    );
    let started = Instant::now();
    let respawned: Vec<Server> = (0..3).map(|i| c.spawn_again(i)).collect();
    for (i, s) in respawned.into_iter().enumerate() {
        c.nodes[i] = s;
        c.nodes[i]
            .wait_up(Duration::from_secs(30))
            .await
            .expect("restarted node up");
    }
    c.wait_formed().await;
    for (i, s) in c.nodes.iter().enumerate() {
        assert_eq!(s.node_id().await, ids_before[i], "node {i} keeps its id");
    }
    for ch in &created {
        for (i, s) in c.nodes.iter().enumerate() {
            poll_until(
                &format!("channel {} connectable on node {i}", ch.id),
                Duration::from_secs(10),
                || async { s.try_ws(&ch.connect_path()).await },
            )
            .await;
        }
    }
    eprintln!(
        "all three back with their ids; {} channels connectable on every node {:?} after the restart",
        created.len(),
        started.elapsed()
    );
}

#[actix_rt::test]
async fn a_data_dir_of_another_cluster_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = start_on(dir.path()).await;
    let mine = a.cluster_view().await["cluster"]
        .as_u64()
        .expect("a cluster id");
    a.create_channel("echo").await;
    a.kill_hard();
    drop(a);
    // Another cluster, in memory, that this directory's node is then pointed at.
    let b = Server::start(&[]).await;
    let theirs = b.cluster_view().await["cluster"]
        .as_u64()
        .expect("a cluster id");
    assert_ne!(mine, theirs, "two clusters, two identities");
    let path = dir.path().display().to_string();
    let join = b.address();
    let out = run_with_env(&[("WRS_DATA_DIR", path.as_str()), ("WRS_JOIN", join.as_str())]).await;
    eprintln!(
        "directory of cluster {mine} started with WRS_JOIN={join} (cluster {theirs}): exit {:?}",
        out.code
    );
    refused(
        &out,
        &path,
        &theirs.to_string(),
        "stderr names the path and the other cluster: ",
    );
    // Nothing was reset: the directory still starts, alone, with its channel.
    let a = start_on(dir.path()).await;
    assert_eq!(a.cluster_view().await["cluster"].as_u64(), Some(mine));
    assert_eq!(a.channel_ids().await.len(), 1);
}
