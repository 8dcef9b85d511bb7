//! Beyond the relay (REQUIREMENTS §7), over real sockets against the real binary: publish over
//! HTTP (`POST /channels/{id}/messages`), presence (`GET /channels/{id}/clients`) and history
//! for late joiners (`"history": N`, `connect?history=K`), each on one node and across the
//! nodes of a cluster (where the channel's owner is computed as the server does, so "a node
//! that is not the owner" is meant literally).
//!
//! No test sleeps to wait for the server: each waits for the event it needs (a message, a
//! status, a presence count). The only timed pauses pace a publisher or stand for a user's
//! idle time in the inactivity-timer test.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wrs_test_support::*;

/// `POST /channels/{id}/messages?token=T` with a content type (none if empty).
async fn publish(s: &Server, id: &str, token: &str, content_type: &str, body: &[u8]) -> Resp {
    let path = format!("/channels/{id}/messages?token={token}");
    let headers: Vec<(&str, &str)> = if content_type.is_empty() {
        vec![]
    } else {
        vec![("content-type", content_type)]
    };
    s.request("POST", &path, &headers, Some(body.to_vec()))
        .await
}

/// A text publish that must be accepted; returns `delivered`.
async fn publish_text(s: &Server, id: &str, token: &str, text: &str) -> u64 {
    let res = publish(s, id, token, "text/plain", text.as_bytes()).await;
    assert_eq!(res.status, 202, "publish {text:?}: {}", res.text());
    res.json()["data"]["delivered"]
        .as_u64()
        .unwrap_or_else(|| panic!("publish: no data.delivered in {}", res.text()))
}

/// `GET /channels/{id}/clients?token=T` → `data` (asserts 200).
async fn presence(s: &Server, id: &str, token: &str) -> Vec<Value> {
    let res = s
        .get(&format!("/channels/{id}/clients?token={token}"))
        .await;
    assert_eq!(res.status, 200, "presence: {}", res.text());
    res.json()["data"]
        .as_array()
        .unwrap_or_else(|| panic!("presence: data is not an array: {}", res.text()))
        .clone()
}

/// Polls presence on `s` until it lists `n` clients.
async fn wait_presence(s: &Server, id: &str, token: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = presence(s, id, token).await;
        if list.len() == n {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "presence stayed at {} clients, expected {n}: {list:?}",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads text messages until `marker` arrives; returns what came before it.
/// Waits until the numbered publisher has sent `n` more messages.
async fn sent_more(sent: &Rc<Cell<u64>>, n: u64) {
    let target = sent.get() + n;
    poll_until("the publisher is under way", WAIT, || async {
        if sent.get() >= target {
            Ok(())
        } else {
            Err(format!("sent {}", sent.get()))
        }
    })
    .await;
}

/// How many text messages each client received until it went quiet (push-pull shares).
async fn shares(clients: &mut [Ws]) -> Vec<usize> {
    let mut counts = Vec::new();
    for ws in clients {
        let mut n = 0;
        while let Some(m) = ws.next_event(QUIET).await {
            assert!(matches!(m, Msg::Text(_)), "{m:?}");
            n += 1;
        }
        counts.push(n);
    }
    counts
}

async fn until_marker(ws: &mut Ws, marker: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let t = ws.recv_text().await;
        if t == marker {
            return seen;
        }
        seen.push(t);
    }
}

/// The node that sequences `channel` among `members`: the server's rendezvous hash
/// (`actors::registry::owner_of`), FNV-1a over the id and the member's id.
fn owner_of(channel: &str, members: &BTreeSet<u64>) -> u64 {
    members
        .iter()
        .copied()
        .max_by_key(|m| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in channel.bytes().chain(m.to_le_bytes()) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            h
        })
        .expect("members")
}

/// Node ids of a formed cluster, by node index.
async fn node_ids(c: &Cluster) -> Vec<u64> {
    c.wait_formed().await;
    let mut ids = Vec::new();
    for s in &c.nodes {
        ids.push(s.node_id().await);
    }
    ids
}

/// Index of the owner of `channel` and the indexes of the other nodes.
fn split_owner(channel: &str, ids: &[u64]) -> (usize, Vec<usize>) {
    let members: BTreeSet<u64> = ids.iter().copied().collect();
    let owner = owner_of(channel, &members);
    let at = ids
        .iter()
        .position(|i| *i == owner)
        .expect("owner is a node");
    (at, (0..ids.len()).filter(|i| *i != at).collect())
}

/// A publisher client that sends `0, 1, 2, …` as text until `stop` is set; `sent` counts.
fn numbered_publisher(mut ws: Ws, sent: Rc<Cell<u64>>, stop: Rc<Cell<bool>>) {
    actix_rt::spawn(async move {
        let mut i = 0u64;
        while !stop.get() {
            ws.send_text(&i.to_string()).await;
            i += 1;
            sent.set(i);
            // Paced, so the joiner connects in the middle of the stream, not after it.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ws.close(1000).await;
    });
}

/// Connects a late joiner with `history=k` while the publisher goes on, reads until it has
/// seen 100 more numbers, and checks that what it got is one contiguous increasing run (no
/// gap, no duplicate at the replay/live boundary) that starts in the replay: at least `k`
/// numbers before the last one sent by the time the connection was admitted.
async fn check_contiguous(joiner: &Server, ch: &Created, k: usize, sent: &Rc<Cell<u64>>) {
    let path = format!("{}&history={k}", ch.connect_path());
    let mut ws = joiner.ws(&path).await;
    // Admitted (and the replay taken) before the upgrade answered: at most this many routed.
    let after_join = sent.get();
    let mut got: Vec<u64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while got.last().is_none_or(|last| *last < after_join + 100) {
        assert!(Instant::now() < deadline, "joiner stalled after {got:?}");
        let t = ws.recv_text().await;
        got.push(t.parse().unwrap_or_else(|_| panic!("not a number: {t:?}")));
    }
    let first = got[0];
    assert!(
        first + k as u64 <= after_join,
        "no replay of {k}: the first message was {first}, {after_join} were sent at admission"
    );
    for pair in got.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "gap or duplicate between {} and {}: {got:?}",
            pair[0],
            pair[1]
        );
    }
}

// ---- publish over HTTP, one node -----------------------------------------------------------

#[actix_rt::test]
async fn publish_on_pub_sub_reaches_every_client_and_answers_202_with_the_count() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    assert_eq!(publish_text(&s, &id, &token, "to nobody").await, 0);
    let mut v = s.connect_n(&id, &token, 3).await;
    let res = publish(&s, &id, &token, "text/plain", b"hello all").await;
    assert_eq!(res.status, 202, "{}", res.text());
    assert_eq!(res.json()["data"]["delivered"], 3, "{}", res.text());
    for ws in &mut v {
        assert_eq!(ws.recv_text().await, "hello all");
    }
    // The `/channel` alias works too.
    let res = s
        .request(
            "POST",
            &format!("/channel/{id}/messages?token={token}"),
            &[("content-type", "text/plain")],
            Some(b"alias".to_vec()),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    for ws in &mut v {
        assert_eq!(ws.recv_text().await, "alias");
        ws.expect_silence(QUIET).await;
    }
}

#[actix_rt::test]
async fn publish_on_push_pull_goes_to_one_client_in_round_robin() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("push-pull").await;
    let mut v = s.connect_n(&id, &token, 3).await;
    for i in 0..9 {
        assert_eq!(publish_text(&s, &id, &token, &format!("job {i}")).await, 1);
    }
    assert_eq!(shares(&mut v).await, [3, 3, 3], "an equal share each");
}

#[actix_rt::test]
async fn publish_content_type_decides_text_or_binary_frame() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    let mut ws = s.connect(&id, &token).await;
    s.wait_clients(&id, 1, WAIT).await;
    for ct in [
        "text/plain",
        "text/csv; charset=utf-8",
        "application/json",
        "application/ld+json",
    ] {
        let body = format!("{{\"ct\": \"{ct}\", \"ü\": 1}}");
        let res = publish(&s, &id, &token, ct, body.as_bytes()).await;
        assert_eq!(res.status, 202, "{ct}: {}", res.text());
        assert_eq!(ws.recv().await, Msg::Text(body), "{ct} is a text frame");
    }
    let bytes: Vec<u8> = (0..=255u8).collect();
    for ct in ["application/octet-stream", "image/png", ""] {
        let res = publish(&s, &id, &token, ct, &bytes).await;
        assert_eq!(res.status, 202, "{ct:?}: {}", res.text());
        assert_eq!(
            ws.recv().await,
            Msg::Binary(bytes.clone()),
            "{ct:?} is a binary frame"
        );
    }
}

#[actix_rt::test]
async fn publish_errors_are_400_403_404_409_413_and_the_token_header_works() {
    let s = Server::start(&[("WRS_MAX_MESSAGE_SIZE", "1024")]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    let mut ws = s.connect(&id, &token).await;
    s.wait_clients(&id, 1, WAIT).await;

    // 400: a text body that is not UTF-8 (a binary one may be anything).
    publish(&s, &id, &token, "text/plain", &[0xff, 0xfe, b'a'])
        .await
        .assert_error(400, "invalid_utf8");
    publish(&s, &id, &token, "application/json", &[0xc3])
        .await
        .assert_error(400, "invalid_utf8");

    // 403: wrong or missing channel token; the API token's header does not stand in for it.
    publish(&s, &id, "wrong", "text/plain", b"x")
        .await
        .assert_error(403, "invalid_token");
    let path = format!("/channels/{id}/messages");
    s.request(
        "POST",
        &path,
        &[("content-type", "text/plain")],
        Some(b"x".to_vec()),
    )
    .await
    .assert_error(403, "invalid_token");
    let bearer = format!("Bearer {token}");
    s.request(
        "POST",
        &path,
        &[("authorization", &bearer)],
        Some(b"x".to_vec()),
    )
    .await
    .assert_error(403, "invalid_token");
    ws.expect_silence(QUIET).await;

    // The channel token in X-Channel-Token works.
    let res = s
        .request(
            "POST",
            &path,
            &[("content-type", "text/plain"), ("x-channel-token", &token)],
            Some(b"by header".to_vec()),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    assert_eq!(ws.recv_text().await, "by header");

    // 404: no such channel.
    publish(&s, "nosuchchannel", &token, "text/plain", b"x")
        .await
        .assert_error(404, "channel_not_found");

    // 413: over WRS_MAX_MESSAGE_SIZE, text or binary; exactly the limit is fine.
    publish(&s, &id, &token, "text/plain", &[b'a'; 1025])
        .await
        .assert_error(413, "body_too_large");
    publish(&s, &id, &token, "", &[7; 4096])
        .await
        .assert_error(413, "body_too_large");
    let res = publish(&s, &id, &token, "", &[7; 1024]).await;
    assert_eq!(res.status, 202, "{}", res.text());
    assert_eq!(ws.recv_binary().await, vec![7; 1024]);

    // 409: echo, req-repl and fan-in-out take no server-side publishes.
    for pattern in ["echo", "req-repl", "fan-in-out"] {
        let (other, other_token) = s.create_channel(pattern).await;
        publish(&s, &other, &other_token, "text/plain", b"x")
            .await
            .assert_error(409, "pattern_unsupported");
    }
    // Other methods on the route are a JSON 405.
    s.get(&format!("{path}?token={token}"))
        .await
        .assert_error(405, "method_not_allowed");
    ws.expect_silence(QUIET).await;
}

#[actix_rt::test]
async fn publish_needs_the_api_token_first_and_its_body_is_never_searched_for_one() {
    let s = Server::start(&[
        ("WRS_AUTH", "true"),
        ("WRS_AUTH_TOKEN", "api-secret"),
        ("WRS_MAX_BODY", "1024"),
    ])
    .await;
    let ch = Created::from_response(
        s.post_json("/channels?auth=api-secret", &json!({"pattern": "pub-sub"}))
            .await,
    );
    let (id, token) = (ch.id.clone(), ch.token.clone());
    let mut ws = s
        .ws(&format!("{}&auth=api-secret", ch.connect_path()))
        .await;

    // 401 before anything else, even with the right channel token or for an unknown channel.
    publish(&s, &id, &token, "text/plain", b"x")
        .await
        .assert_error(401, "unauthorized");
    publish(&s, "nosuchchannel", &token, "text/plain", b"x")
        .await
        .assert_error(401, "unauthorized");
    // A JSON body's "auth" is the user's payload here, not a credential.
    let body = br#"{"auth": "api-secret"}"#;
    publish(&s, &id, &token, "application/json", body)
        .await
        .assert_error(401, "unauthorized");

    // With the API token (query or Bearer) the body arrives intact, even past WRS_MAX_BODY.
    let path = format!("/channels/{id}/messages?token={token}&auth=api-secret");
    let res = s
        .request(
            "POST",
            &path,
            &[("content-type", "application/json")],
            Some(body.to_vec()),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    assert_eq!(ws.recv_text().await, String::from_utf8_lossy(body));
    let big = "b".repeat(4000);
    let res = s
        .request(
            "POST",
            &format!("/channels/{id}/messages"),
            &[
                ("content-type", "text/plain"),
                ("authorization", "Bearer api-secret"),
                ("x-channel-token", &token),
            ],
            Some(big.clone().into_bytes()),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    assert_eq!(ws.recv_text().await, big);
    // The API token does not replace the channel token.
    let res = s
        .request(
            "POST",
            &format!("/channels/{id}/messages?auth=api-secret"),
            &[("content-type", "text/plain")],
            Some(b"x".to_vec()),
        )
        .await;
    res.assert_error(403, "invalid_token");
}

#[actix_rt::test]
async fn publish_resets_the_inactivity_timer() {
    let s = Server::start(&[]).await;
    let ch = s
        .create(json!({"pattern": "pub-sub", "timeout": 1500}))
        .await;
    // Published to for twice its timeout, it stays.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3000) {
        publish_text(&s, &ch.id, &ch.token, "keep alive").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let res = s.get(&format!("/channels/{}", ch.id)).await;
        assert_eq!(res.status, 200, "the channel timed out while published to");
        let countdown = res.json()["data"]["countdown"].as_i64().expect("countdown");
        assert!(countdown > 700, "countdown was not reset: {countdown}");
    }
    // Left alone, it times out (so the publishes were what kept it).
    poll_until(
        "the idle channel is deleted",
        Duration::from_secs(6),
        || async {
            match s.get(&format!("/channels/{}", ch.id)).await.status {
                404 => Ok(()),
                st => Err(format!("status {st}")),
            }
        },
    )
    .await;
}

// ---- presence, one node --------------------------------------------------------------------

#[actix_rt::test]
async fn presence_lists_connected_clients_with_req_repl_ids_and_forgets_one_that_leaves() {
    let s = Server::start(&[]).await;
    let node = s.node_id().await;
    let (id, token) = s.create_channel("req-repl").await;
    assert!(presence(&s, &id, &token).await.is_empty());
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let mut a = s.connect(&id, &token).await;
    let mut b = s.connect(&id, &token).await;
    let list = wait_presence(&s, &id, &token, 2).await;
    for c in &list {
        assert_eq!(c["node"].as_u64(), Some(node), "{c}");
        let at = c["connectedAt"].as_u64().expect("connectedAt is ms");
        assert!(at >= before && at < before + 60_000, "connectedAt {at}");
        assert!(c["id"].as_str().is_some_and(|i| !i.is_empty()), "{c}");
    }
    // The ids are the origins req-repl stamps.
    a.send_json(&json!({"type": "request", "q": 1})).await;
    let origin = b.recv_json().await["origin"]
        .as_str()
        .expect("origin")
        .to_string();
    assert!(
        list.iter().any(|c| c["id"] == origin.as_str()),
        "origin {origin} not in {list:?}"
    );

    // 403 without or with a wrong token; the header works; 404 for an unknown channel.
    s.get(&format!("/channels/{id}/clients"))
        .await
        .assert_error(403, "invalid_token");
    s.get(&format!("/channels/{id}/clients?token=nope"))
        .await
        .assert_error(403, "invalid_token");
    let res = s
        .request(
            "GET",
            &format!("/channels/{id}/clients"),
            &[("x-channel-token", &token)],
            None,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    s.get(&format!("/channels/nosuch/clients?token={token}"))
        .await
        .assert_error(404, "channel_not_found");

    // A client that leaves disappears; nobody was sent a frame for any of this.
    a.close(1000).await;
    let left = wait_presence(&s, &id, &token, 1).await;
    assert_ne!(left[0]["id"], origin.as_str());
    b.expect_silence(QUIET).await;
}

// ---- history, one node ---------------------------------------------------------------------

#[actix_rt::test]
async fn history_must_be_0_to_1000_on_pub_sub_and_history_k_a_whole_number() {
    let s = Server::start(&[]).await;
    for body in [
        json!({"pattern": "pub-sub", "history": 1001}),
        json!({"pattern": "pub-sub", "history": -1}),
        json!({"pattern": "pub-sub", "history": 1.5}),
        json!({"pattern": "pub-sub", "history": "5"}),
        json!({"pattern": "push-pull", "history": 5}),
        json!({"pattern": "echo", "history": 1}),
    ] {
        let res = s.post_json("/channels", &body).await;
        let v = res.assert_error(400, "invalid_field");
        assert!(
            v["message"].as_str().unwrap_or("").contains("history"),
            "{v}"
        );
    }
    let ch = s.create(json!({"pattern": "echo", "history": 0})).await;
    assert_eq!(ch.body["data"]["history"], 0);
    let ch = s
        .create(json!({"pattern": "pub-sub", "history": 1000}))
        .await;
    assert_eq!(s.channel(&ch.id).await["history"], 1000);
    for bad in ["abc", "-1", "1.5", ""] {
        s.raw_upgrade(&format!("{}&history={bad}", ch.connect_path()))
            .await
            .assert_error(400, "invalid_query");
    }
}

#[actix_rt::test]
async fn history_replays_up_to_k_newest_messages_oldest_first_and_nothing_without_history() {
    let s = Server::start(&[]).await;
    let ch = s.create(json!({"pattern": "pub-sub", "history": 5})).await;
    // A client publishes some, HTTP the rest: both are history.
    let mut first = s.connect(&ch.id, &ch.token).await;
    let mut watcher = s.connect(&ch.id, &ch.token).await;
    for i in 0..4 {
        first.send_text(&format!("m{i}")).await;
    }
    // Routed (and stored) before the HTTP ones that follow.
    for i in 0..4 {
        assert_eq!(watcher.recv_text().await, format!("m{i}"));
    }
    for i in 4..8 {
        publish_text(&s, &ch.id, &ch.token, &format!("m{i}")).await;
    }
    for i in 4..8 {
        assert_eq!(first.recv_text().await, format!("m{i}"));
    }
    let mut three = s.ws(&format!("{}&history=3", ch.connect_path())).await;
    let mut all = s.ws(&format!("{}&history=100", ch.connect_path())).await;
    let mut zero = s.ws(&format!("{}&history=0", ch.connect_path())).await;
    let mut none = s.connect(&ch.id, &ch.token).await;
    publish_text(&s, &ch.id, &ch.token, "live").await;
    assert_eq!(until_marker(&mut three, "live").await, ["m5", "m6", "m7"]);
    assert_eq!(
        until_marker(&mut all, "live").await,
        ["m3", "m4", "m5", "m6", "m7"],
        "at most the channel's 5"
    );
    assert!(until_marker(&mut zero, "live").await.is_empty());
    assert!(until_marker(&mut none, "live").await.is_empty());

    // A channel without history replays nothing, whatever K.
    let (plain, token) = s.create_channel("pub-sub").await;
    publish_text(&s, &plain, &token, "old").await;
    let mut late = s
        .ws(&format!(
            "/channels/{plain}/connect?token={token}&history=10"
        ))
        .await;
    publish_text(&s, &plain, &token, "live").await;
    assert!(until_marker(&mut late, "live").await.is_empty());
}

#[actix_rt::test]
async fn history_is_bounded_in_bytes_by_wrs_history_bytes() {
    let s = Server::start(&[("WRS_HISTORY_BYTES", "1000")]).await;
    let ch = s
        .create(json!({"pattern": "pub-sub", "history": 100}))
        .await;
    let messages: Vec<String> = (0..10).map(|i| format!("{i}{}", "x".repeat(299))).collect();
    for m in &messages {
        publish_text(&s, &ch.id, &ch.token, m).await;
    }
    let mut late = s.ws(&format!("{}&history=100", ch.connect_path())).await;
    publish_text(&s, &ch.id, &ch.token, "live").await;
    // 300 bytes each: three fit in 1000.
    assert_eq!(
        until_marker(&mut late, "live").await,
        messages[7..].to_vec()
    );
}

#[actix_rt::test]
async fn the_nodes_history_budget_caps_all_channels_together_and_is_freed_by_a_delete() {
    // Each channel may keep 1000 bytes, the node 1500 for all of them.
    let s = Server::start(&[
        ("WRS_HISTORY_BYTES", "1000"),
        ("WRS_HISTORY_TOTAL_BYTES", "1500"),
    ])
    .await;
    let first = s
        .create(json!({"pattern": "pub-sub", "history": 100}))
        .await;
    let second = s
        .create(json!({"pattern": "pub-sub", "history": 100}))
        .await;
    let messages: Vec<String> = (0..10).map(|i| format!("{i}{}", "y".repeat(99))).collect();
    for m in &messages {
        publish_text(&s, &first.id, &first.token, m).await;
    }
    for m in &messages {
        publish_text(&s, &second.id, &second.token, m).await;
    }
    // The first channel holds its 1000 bytes; the second only the 500 left, its newest five.
    let mut late = s
        .ws(&format!("{}&history=100", second.connect_path()))
        .await;
    publish_text(&s, &second.id, &second.token, "live").await;
    assert_eq!(
        until_marker(&mut late, "live").await,
        messages[5..].to_vec()
    );
    let mut late_first = s.ws(&format!("{}&history=100", first.connect_path())).await;
    publish_text(&s, &first.id, &first.token, "live").await;
    assert_eq!(until_marker(&mut late_first, "live").await, messages);
    drop(late_first);
    // Deleting the first channel hands its bytes back: the second keeps ten again.
    let deleted = s.delete(&format!("/channels/{}", first.id)).await;
    assert_eq!(deleted.status, 200);
    for m in &messages {
        publish_text(&s, &second.id, &second.token, m).await;
    }
    let mut again = s.ws(&format!("{}&history=10", second.connect_path())).await;
    publish_text(&s, &second.id, &second.token, "live").await;
    assert_eq!(until_marker(&mut again, "live").await, messages);
}

#[actix_rt::test]
async fn history_replay_and_live_stream_have_no_gap_and_no_duplicate() {
    let s = Server::start(&[]).await;
    let ch = s.create(json!({"pattern": "pub-sub", "history": 50})).await;
    let publisher = s.connect(&ch.id, &ch.token).await;
    let (sent, stop) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
    numbered_publisher(publisher, Rc::clone(&sent), Rc::clone(&stop));
    for _ in 0..3 {
        sent_more(&sent, 80).await;
        check_contiguous(&s, &ch, 30, &sent).await;
    }
    stop.set(true);
}

// ---- across the nodes of a cluster ---------------------------------------------------------

#[actix_rt::test]
async fn cluster_publish_and_presence_work_from_nodes_that_are_not_the_owner() {
    let c = Cluster::start(3, &[("WRS_MAX_MESSAGE_SIZE", "2048")]).await;
    let ids = node_ids(&c).await;
    let ch = c.nodes[0].create(json!({"pattern": "pub-sub"})).await;
    c.wait_visible(&ch.id).await;
    let (owner, others) = split_owner(&ch.id, &ids);

    // One subscriber per node; presence on every node lists all three with their nodes.
    let mut subs = Vec::new();
    for s in &c.nodes {
        subs.push(s.connect(&ch.id, &ch.token).await);
    }
    for s in &c.nodes {
        let list = wait_presence(s, &ch.id, &ch.token, 3).await;
        let mut nodes: Vec<u64> = list.iter().filter_map(|c| c["node"].as_u64()).collect();
        nodes.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(nodes, want, "one client on each node: {list:?}");
    }

    // A publish on each node, the non-owners first, reaches the subscribers on all nodes.
    for i in others.iter().copied().chain([owner]) {
        let text = format!("via node {i}");
        assert_eq!(publish_text(&c.nodes[i], &ch.id, &ch.token, &text).await, 3);
        for (j, ws) in subs.iter_mut().enumerate() {
            assert_eq!(ws.recv_text().await, text, "subscriber on node {j}");
        }
    }
    // Binary through a non-owner stays binary.
    let res = publish(&c.nodes[others[0]], &ch.id, &ch.token, "", &[0, 255, 1]).await;
    assert_eq!(res.status, 202, "{}", res.text());
    for ws in subs.iter_mut() {
        assert_eq!(ws.recv_binary().await, vec![0, 255, 1]);
    }

    // Errors on a non-owner node are the same as on the owner.
    let proxy = &c.nodes[others[1]];
    publish(proxy, &ch.id, "wrong", "text/plain", b"x")
        .await
        .assert_error(403, "invalid_token");
    publish(proxy, &ch.id, &ch.token, "text/plain", &[0xff])
        .await
        .assert_error(400, "invalid_utf8");
    publish(proxy, &ch.id, &ch.token, "", &[1; 4096])
        .await
        .assert_error(413, "body_too_large");
    publish(proxy, "nosuch", &ch.token, "text/plain", b"x")
        .await
        .assert_error(404, "channel_not_found");
    proxy
        .get(&format!("/channels/{}/clients?token=wrong", ch.id))
        .await
        .assert_error(403, "invalid_token");
    let echo = c.nodes[owner].create(json!({"pattern": "echo"})).await;
    c.wait_visible(&echo.id).await;
    for s in &c.nodes {
        publish(s, &echo.id, &echo.token, "text/plain", b"x")
            .await
            .assert_error(409, "pattern_unsupported");
    }

    // A client that leaves (on a non-owner) disappears from every node's list.
    let gone = others[1];
    subs[gone].close(1000).await;
    for s in &c.nodes {
        let list = wait_presence(s, &ch.id, &ch.token, 2).await;
        assert!(
            list.iter().all(|c| c["node"].as_u64() != Some(ids[gone])),
            "the client on node {gone} is still listed: {list:?}"
        );
    }
    for (j, ws) in subs.iter_mut().enumerate() {
        if j != gone {
            ws.expect_silence(QUIET).await;
        }
    }

    // Push-pull over HTTP publishes on non-owners is round robin across nodes.
    let pp = c.nodes[0].create(json!({"pattern": "push-pull"})).await;
    c.wait_visible(&pp.id).await;
    let (_, pp_others) = split_owner(&pp.id, &ids);
    let mut workers = Vec::new();
    for s in &c.nodes {
        workers.push(s.connect(&pp.id, &pp.token).await);
    }
    wait_presence(&c.nodes[0], &pp.id, &pp.token, 3).await;
    for k in 0..9 {
        let via = &c.nodes[pp_others[k % 2]];
        assert_eq!(
            publish_text(via, &pp.id, &pp.token, &format!("job {k}")).await,
            1
        );
    }
    assert_eq!(
        shares(&mut workers).await,
        [3, 3, 3],
        "an equal share on every node"
    );

    // Publishes that only reach non-owner nodes keep the channel alive at its owner.
    let idle = c.nodes[0]
        .create(json!({"pattern": "pub-sub", "timeout": 1500}))
        .await;
    c.wait_visible(&idle.id).await;
    let (_, idle_others) = split_owner(&idle.id, &ids);
    let start = Instant::now();
    let mut k = 0;
    while start.elapsed() < Duration::from_millis(3000) {
        publish_text(&c.nodes[idle_others[k % 2]], &idle.id, &idle.token, "ping").await;
        k += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for s in &c.nodes {
        let res = s.get(&format!("/channels/{}", idle.id)).await;
        assert_eq!(
            res.status, 200,
            "timed out although published to via non-owners"
        );
    }
}

#[actix_rt::test]
async fn cluster_history_is_replayed_to_clients_on_proxy_nodes_without_gap_or_duplicate() {
    let c = Cluster::start(3, &[]).await;
    let ids = node_ids(&c).await;
    let ch = c.nodes[0]
        .create(json!({"pattern": "pub-sub", "history": 5}))
        .await;
    c.wait_visible(&ch.id).await;
    let (owner, others) = split_owner(&ch.id, &ids);
    for i in 0..8 {
        let via = &c.nodes[i % 3];
        publish_text(via, &ch.id, &ch.token, &format!("m{i}")).await;
    }
    let mut late: HashMap<usize, Ws> = HashMap::new();
    for i in others.iter().copied().chain([owner]) {
        let path = format!("{}&history=3", ch.connect_path());
        late.insert(i, c.nodes[i].ws(&path).await);
    }
    let mut none = c.nodes[others[0]].connect(&ch.id, &ch.token).await;
    publish_text(&c.nodes[others[1]], &ch.id, &ch.token, "live").await;
    for (i, ws) in late.iter_mut() {
        assert_eq!(
            until_marker(ws, "live").await,
            ["m5", "m6", "m7"],
            "late joiner on node {i} (owner {owner})"
        );
    }
    assert!(until_marker(&mut none, "live").await.is_empty());

    // Under a publisher on the owner, a late joiner on each proxy node sees one contiguous run.
    let seq = c.nodes[0]
        .create(json!({"pattern": "pub-sub", "history": 50}))
        .await;
    c.wait_visible(&seq.id).await;
    let (seq_owner, seq_others) = split_owner(&seq.id, &ids);
    let publisher = c.nodes[seq_owner].connect(&seq.id, &seq.token).await;
    let (sent, stop) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
    numbered_publisher(publisher, Rc::clone(&sent), Rc::clone(&stop));
    for i in seq_others {
        sent_more(&sent, 80).await;
        check_contiguous(&c.nodes[i], &seq, 30, &sent).await;
    }
    stop.set(true);
}

#[actix_rt::test]
async fn cluster_history_starts_empty_at_a_new_owner_and_presence_forgets_a_dead_node() {
    let mut c = Cluster::start(3, &[("WRS_NODE_DOWN_AFTER", "1500")]).await;
    let ids = node_ids(&c).await;
    let ch = c.nodes[0]
        .create(json!({"pattern": "pub-sub", "history": 10}))
        .await;
    c.wait_visible(&ch.id).await;
    let (owner, others) = split_owner(&ch.id, &ids);
    let mut subs = Vec::new();
    for s in &c.nodes {
        subs.push(s.connect(&ch.id, &ch.token).await);
    }
    wait_presence(&c.nodes[others[0]], &ch.id, &ch.token, 3).await;
    for i in 0..5 {
        publish_text(&c.nodes[others[0]], &ch.id, &ch.token, &format!("m{i}")).await;
    }

    // The owner dies: a survivor takes the channel over, with an empty history.
    c.nodes[owner].kill_hard();
    let survivor = &c.nodes[others[0]];
    let path = format!("/channels/{}/messages?token={}", ch.id, ch.token);
    let path = &path;
    let mut k = 0;
    poll_until(
        "a survivor accepts publishes again",
        Duration::from_secs(15),
        || {
            k += 1;
            let text = format!("after{k}");
            async move {
                let headers = [("content-type", "text/plain")];
                match survivor
                    .request("POST", path, &headers, Some(text.into_bytes()))
                    .await
                {
                    r if r.status == 202 => Ok(()),
                    r => Err(format!("{} {}", r.status, r.text())),
                }
            }
        },
    )
    .await;
    let mut late = c.nodes[others[1]]
        .ws(&format!("{}&history=10", ch.connect_path()))
        .await;
    publish_text(survivor, &ch.id, &ch.token, "live").await;
    let replay = until_marker(&mut late, "live").await;
    assert!(
        !replay.is_empty(),
        "what was published after the takeover is kept"
    );
    assert!(
        replay.iter().all(|m| m.starts_with("after")),
        "history from before the failover was replayed: {replay:?}"
    );

    // Presence forgets the dead node's client once it is marked down.
    let list = wait_presence(survivor, &ch.id, &ch.token, 3).await;
    let nodes: BTreeSet<u64> = list.iter().filter_map(|c| c["node"].as_u64()).collect();
    assert!(!nodes.contains(&ids[owner]), "{list:?}");
}
