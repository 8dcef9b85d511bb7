//! Messaging patterns (table-7 1.3.x) and channel properties (1.4.x, 1.5.1).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wrs_test_support::*;

// 1.3.1
#[actix_rt::test]
async fn t1_3_1_echo_returns_to_sender_only() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("echo").await;
    let mut v = s.connect_n(&id, &token, 2).await;
    v[0].send_text("hello 0").await;
    assert_eq!(v[0].recv_text().await, "hello 0");
    v[1].send_text("hello 1").await;
    assert_eq!(v[1].recv_text().await, "hello 1");
    // Causality: had client 1 received "hello 0", it would have arrived before "hello 1".
    v[0].expect_silence(QUIET).await;
}

#[actix_rt::test]
async fn binary_stays_binary_and_text_stays_text() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("echo").await;
    let mut ws = s.connect(&id, &token).await;
    let bin: Vec<u8> = (0..=255u8).collect();
    ws.send_binary(&bin).await;
    assert_eq!(ws.recv().await, Msg::Binary(bin.clone()));
    ws.send_text("{\"not\": \"binary\"}").await;
    assert_eq!(ws.recv().await, Msg::Text("{\"not\": \"binary\"}".into()));
    ws.send_text("ünïcödé ✓").await;
    assert_eq!(ws.recv().await, Msg::Text("ünïcödé ✓".into()));
    // The same through pub-sub.
    let (id, token) = s.create_channel("pub-sub").await;
    let mut v = s.connect_n(&id, &token, 2).await;
    v[0].send_binary(&bin).await;
    assert_eq!(v[1].recv().await, Msg::Binary(bin));
    v[0].send_text("text").await;
    assert_eq!(v[1].recv().await, Msg::Text("text".into()));
}

// 1.3.2
#[actix_rt::test]
async fn t1_3_2_pub_sub_reaches_others_not_sender() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    let mut v = s.connect_n(&id, &token, 3).await;
    v[0].send_text("from 0").await;
    assert_eq!(v[1].recv_text().await, "from 0");
    assert_eq!(v[2].recv_text().await, "from 0");
    // Client 1 publishes after it saw "from 0": client 0's next message must be that one.
    v[1].send_text("from 1").await;
    assert_eq!(v[2].recv_text().await, "from 1");
    assert_eq!(
        v[0].recv_text().await,
        "from 1",
        "the sender got its own message"
    );
    v[1].expect_silence(QUIET).await;
}

#[actix_rt::test]
async fn pub_sub_lone_sender_gets_nothing() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    let mut a = s.connect(&id, &token).await;
    a.send_text("anyone?").await;
    a.expect_silence(QUIET).await;
}

#[actix_rt::test]
async fn pub_sub_include_sender_delivers_to_sender_too() {
    let s = Server::start(&[]).await;
    let c = s
        .create(json!({"pattern": "pub-sub", "includeSender": true}))
        .await;
    let mut v = s.connect_n(&c.id, &c.token, 2).await;
    v[0].send_text("me too").await;
    assert_eq!(v[0].recv_text().await, "me too");
    assert_eq!(v[1].recv_text().await, "me too");
}

#[actix_rt::test]
async fn pub_sub_keeps_order_per_sender() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    let mut v = s.connect_n(&id, &token, 2).await;
    for i in 0..200 {
        v[0].send_text(&format!("m{i}")).await;
    }
    for i in 0..200 {
        assert_eq!(v[1].recv_text().await, format!("m{i}"));
    }
}

// 1.3.3
#[actix_rt::test]
async fn t1_3_3_push_pull_is_fair_and_skips_the_producer() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("push-pull").await;
    let mut v = s.connect_n(&id, &token, 3).await;
    let mut workers = v.split_off(1);
    let mut producer = v.pop().unwrap();
    let n = 100;
    for i in 0..n {
        producer.send_text(&format!("job {i}")).await;
    }
    // Collect until all n arrived somewhere (each worker reads until it is quiet).
    let mut got: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    let deadline = Instant::now() + Duration::from_secs(15);
    while got[0].len() + got[1].len() < n && Instant::now() < deadline {
        for (w, g) in workers.iter_mut().zip(got.iter_mut()) {
            while let Some(m) = w.next_event(Duration::from_millis(100)).await {
                match m {
                    Msg::Text(t) => g.push(t),
                    other => panic!("worker got {other:?}"),
                }
            }
        }
    }
    assert_eq!(
        got[0].len() + got[1].len(),
        n,
        "workers got {} + {} of {n} messages",
        got[0].len(),
        got[1].len()
    );
    for g in &got {
        assert!(
            (49..=51).contains(&g.len()),
            "unfair split: {} / {}",
            got[0].len(),
            got[1].len()
        );
    }
    let mut all: Vec<String> = got.concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a message was delivered twice");
    producer.expect_silence(QUIET).await;
}

#[actix_rt::test]
async fn push_pull_lone_client_gets_its_own_message() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("push-pull").await;
    let mut a = s.connect(&id, &token).await;
    a.send_text("boomerang").await;
    assert_eq!(a.recv_text().await, "boomerang");
}

// 1.3.4
#[actix_rt::test]
async fn t1_3_4_req_repl_routes_replies_to_origin() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("req-repl").await;
    let mut v = s.connect_n(&id, &token, 3).await;
    v[0].send_json(
        &json!({"type": "request", "origin": "forged", "q": 42, "nested": {"a": [1, 2]}}),
    )
    .await;
    let r1 = v[1].recv_json().await;
    let r2 = v[2].recv_json().await;
    for r in [&r1, &r2] {
        assert_eq!(r["type"], "request");
        assert_eq!(r["q"], 42);
        assert_eq!(r["nested"], json!({"a": [1, 2]}), "fields pass through");
        let origin = r["origin"].as_str().expect("origin set by the server");
        assert_ne!(
            origin, "forged",
            "client-supplied origin must be overwritten"
        );
    }
    assert_eq!(r1["origin"], r2["origin"]);
    let origin = r1["origin"].as_str().unwrap().to_string();
    // Client 1 replies.
    v[1].send_json(&json!({"type": "reply", "origin": origin, "answer": "yes"}))
        .await;
    let rep = v[0].recv_json().await;
    assert_eq!(rep["type"], "reply");
    assert_eq!(rep["answer"], "yes");
    // Client 0 asks again after it saw the reply; clients 1 and 2 must see that request next
    // (a misrouted reply would have been queued before it).
    v[0].send_json(&json!({"type": "request", "q": 2})).await;
    for c in v[1..].iter_mut() {
        let m = c.recv_json().await;
        assert_eq!(m["type"], "request", "only the origin gets a reply: {m}");
        assert_eq!(m["q"], 2);
    }
    v[0].expect_silence(QUIET).await;
}

#[actix_rt::test]
async fn req_repl_error_frames_keep_the_connection_open() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("req-repl").await;
    let mut v = s.connect_n(&id, &token, 2).await;
    let cases: Vec<(&str, &str)> = vec![
        ("not json", "invalid_json"),
        ("[1,2]", "invalid_json"),
        ("\"request\"", "invalid_json"),
        (r#"{"no": "type"}"#, "invalid_type"),
        (r#"{"type": "shout"}"#, "invalid_type"),
        (r#"{"type": 1}"#, "invalid_type"),
        (r#"{"type": "reply"}"#, "missing_origin"),
        (r#"{"type": "reply", "origin": 7}"#, "missing_origin"),
        (
            r#"{"type": "reply", "origin": "nobody-here"}"#,
            "unknown_origin",
        ),
    ];
    for (text, code) in cases {
        v[0].send_text(text).await;
        let e = v[0].recv_json().await;
        assert_eq!(e["type"], "error", "for {text:?}: {e}");
        assert_eq!(e["error"], code, "for {text:?}: {e}");
        assert!(e["message"].is_string(), "{e}");
    }
    v[0].send_binary(b"\x00\x01binary").await;
    let e = v[0].recv_json().await;
    assert_eq!(e["type"], "error", "for a binary frame: {e}");
    assert_eq!(e["error"], "binary_unsupported", "for a binary frame: {e}");
    // Still open and nothing leaked to the other client.
    v[0].send_json(&json!({"type": "request", "n": 1})).await;
    let m = v[1].recv_json().await;
    assert_eq!(
        m["n"], 1,
        "the other client's first message is the valid request"
    );
}

#[actix_rt::test]
async fn fan_in_out_round_robin_with_replies_to_origin() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("fan-in-out").await;
    let mut v = s.connect_n(&id, &token, 3).await;
    let mut workers = v.split_off(1);
    let mut boss = v.pop().unwrap();
    let n = 20;
    for i in 0..n {
        boss.send_json(&json!({"type": "request", "job": i})).await;
    }
    let mut counts = [0usize; 2];
    let mut origin: Option<String> = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    while counts[0] + counts[1] < n && Instant::now() < deadline {
        for (k, w) in workers.iter_mut().enumerate() {
            while let Some(m) = w.next_event(Duration::from_millis(100)).await {
                let Msg::Text(t) = m else {
                    panic!("worker got {m:?}")
                };
                let r: Value = serde_json::from_str(&t).expect("json");
                assert_eq!(r["type"], "request");
                let o = r["origin"].as_str().expect("origin").to_string();
                if let Some(prev) = &origin {
                    assert_eq!(&o, prev, "one origin for one requester");
                }
                origin = Some(o.clone());
                counts[k] += 1;
                w.send_json(&json!({"type": "reply", "origin": o, "job": r["job"], "by": k}))
                    .await;
            }
        }
    }
    assert_eq!(counts[0] + counts[1], n, "workers got {counts:?}");
    assert!(
        counts[0].abs_diff(counts[1]) <= 1,
        "round robin is not fair: {counts:?}"
    );
    let mut jobs = Vec::new();
    for _ in 0..n {
        let r = boss.recv_json().await;
        assert_eq!(r["type"], "reply");
        jobs.push(r["job"].as_u64().expect("job"));
    }
    jobs.sort();
    assert_eq!(jobs, (0..n as u64).collect::<Vec<_>>());
    for w in workers.iter_mut() {
        w.expect_silence(QUIET).await;
    }
}

#[actix_rt::test]
async fn fan_in_out_lone_client_gets_its_request_back() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("fan-in-out").await;
    let mut a = s.connect(&id, &token).await;
    a.send_json(&json!({"type": "request", "x": "y"})).await;
    let m = a.recv_json().await;
    assert_eq!(m["type"], "request");
    assert_eq!(m["x"], "y");
    assert!(m["origin"].is_string(), "origin is set: {m}");
}

// 1.3.5
#[actix_rt::test]
async fn t1_3_5_wrong_or_missing_token_is_403_json() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("echo").await;
    s.raw_upgrade(&format!("/channels/{id}/connect?token=wrong"))
        .await
        .assert_error(403, "invalid_token");
    s.raw_upgrade(&format!("/channels/{id}/connect"))
        .await
        .assert_error(403, "invalid_token");
    s.raw_upgrade(&format!("/channels/{id}/connect?token="))
        .await
        .assert_error(403, "invalid_token");
    // A token of another channel does not open this one.
    let (_, other_token) = s.create_channel("echo").await;
    s.raw_upgrade(&format!("/channels/{id}/connect?token={other_token}"))
        .await
        .assert_error(403, "invalid_token");
    // Not counted as clients; the right token works.
    assert_eq!(s.clients(&id).await, 0);
    let up = s
        .raw_upgrade(&format!("/channels/{id}/connect?token={token}"))
        .await;
    assert_eq!(up.status, 101);
}

#[actix_rt::test]
async fn connect_errors_unknown_channel_and_not_websocket() {
    let s = Server::start(&[]).await;
    s.raw_upgrade("/channels/nope/connect?token=x")
        .await
        .assert_error(404, "channel_not_found");
    let (id, token) = s.create_channel("echo").await;
    s.get(&format!("/channels/{id}/connect?token={token}"))
        .await
        .assert_error(400, "not_websocket");
    s.get(&format!("/channels/{id}/connect?token=bad"))
        .await
        .assert_error(403, "invalid_token");
}

// 1.4.1
#[actix_rt::test]
async fn t1_4_1_timeout_deletes_channel_and_closes_clients_with_4001() {
    let s = Server::start(&[]).await;
    let c = s.create(json!({"pattern": "echo", "timeout": 1000})).await;
    let mut ws = s.connect(&c.id, &c.token).await;
    let start = Instant::now();
    let reason = ws.expect_close(4001, Duration::from_secs(6)).await;
    assert!(!reason.is_empty(), "close 4001 without reason");
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "closed too early: {:?}",
        start.elapsed()
    );
    s.get(&format!("/channels/{}", c.id))
        .await
        .assert_error(404, "channel_not_found");
}

#[actix_rt::test]
async fn timeout_without_clients_deletes_channel() {
    let s = Server::start(&[]).await;
    let c = s.create(json!({"pattern": "echo", "timeout": 300})).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = s.get(&format!("/channels/{}", c.id)).await;
        if res.status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "channel still there: {}",
            res.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// 1.4.2
#[actix_rt::test]
async fn t1_4_2_messages_extend_the_timeout() {
    let s = Server::start(&[]).await;
    let c = s.create(json!({"pattern": "echo", "timeout": 1500})).await;
    let mut ws = s.connect(&c.id, &c.token).await;
    let start = Instant::now();
    let mut i = 0;
    // Keep the channel busy for 3 s, twice its timeout.
    while start.elapsed() < Duration::from_secs(3) {
        ws.send_text(&format!("tick {i}")).await;
        assert_eq!(ws.recv_text().await, format!("tick {i}"));
        let d = s.channel(&c.id).await;
        let cd = d["countdown"].as_i64().expect("countdown");
        assert!(
            cd > 900 && cd <= 1500,
            "countdown {cd} right after a message (timeout 1500)"
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Silent now: the countdown runs down and the timeout fires.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let cd = s.channel(&c.id).await["countdown"].as_i64().unwrap();
    assert!(cd < 1000, "countdown {cd} does not run down");
    ws.expect_close(4001, Duration::from_secs(5)).await;
}

// 1.5.1
#[actix_rt::test]
async fn t1_5_1_client_limit_refuses_extra_connection_with_409() {
    let s = Server::start(&[]).await;
    let c = s
        .create(json!({"pattern": "pub-sub", "clientLimit": 2}))
        .await;
    let mut v = s.connect_n(&c.id, &c.token, 2).await;
    s.raw_upgrade(&c.connect_path())
        .await
        .assert_error(409, "client_limit_reached");
    assert_eq!(s.clients(&c.id).await, 2);
    // The two still talk.
    v[0].send_text("still fine").await;
    assert_eq!(v[1].recv_text().await, "still fine");
    // A slot frees when one leaves.
    v[0].close(1000).await;
    drop(v.remove(0));
    s.wait_clients(&c.id, 1, WAIT).await;
    let _again = s.connect(&c.id, &c.token).await;
}

#[actix_rt::test]
async fn client_limit_zero_refuses_everyone() {
    let s = Server::start(&[]).await;
    let c = s.create(json!({"pattern": "echo", "clientLimit": 0})).await;
    s.raw_upgrade(&c.connect_path())
        .await
        .assert_error(409, "client_limit_reached");
}

#[actix_rt::test]
async fn clients_count_follows_connects_and_disconnects() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    let mut v = s.connect_n(&id, &token, 3).await;
    assert_eq!(s.clients(&id).await, 3);
    v[2].close(1000).await;
    s.wait_clients(&id, 2, WAIT).await;
    drop(v.pop());
    // A client that vanishes without a close frame (TCP drop) is also removed.
    drop(v.pop());
    s.wait_clients(&id, 1, WAIT).await;
}

#[actix_rt::test]
async fn client_close_is_answered_with_the_same_code() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("echo").await;
    let mut ws = s.connect(&id, &token).await;
    ws.close(1000).await;
    ws.expect_close(1000, WAIT).await;
    s.wait_clients(&id, 0, WAIT).await;
}

#[actix_rt::test]
async fn a_new_connection_resets_the_inactivity_timer() {
    let s = Server::start(&[]).await;
    let c = s
        .create(json!({"pattern": "pub-sub", "timeout": 1500}))
        .await;
    let mut clients = Vec::new();
    let start = Instant::now();
    // Joins every 500 ms for 3 s (twice the timeout), no messages.
    while start.elapsed() < Duration::from_secs(3) {
        clients.push(s.connect(&c.id, &c.token).await);
        let cd = s.channel(&c.id).await["countdown"].as_i64().unwrap();
        assert!(cd > 900, "countdown {cd} right after a join (timeout 1500)");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for ws in clients.iter_mut() {
        ws.expect_close(4001, Duration::from_secs(5)).await;
    }
}
