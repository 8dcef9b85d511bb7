//! Hostile input on the peer port: a crafted Raft heartbeat (the message that used to panic
//! raft-rs inside the Raft actor), senders outside the configuration, garbage frames and
//! absurd declared lengths. After each, the node must still create channels and say ready.

use std::time::Duration;

use awc::ws::Message as WsMessage;
use futures_util::SinkExt;
use raft::eraftpb::{Message as RaftMessage, MessageType};
use wrs::cluster::peer::proof;
use wrs::cluster::peer::wire::Frame;
use wrs_test_support::*;

/// Opens `/link` on the node's peer port, claiming to be node `claimed`.
async fn link(s: &Server, claimed: u64) -> actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec> {
    link_with_secret(s, claimed, None).await
}

async fn link_with_secret(
    s: &Server,
    claimed: u64,
    secret: Option<&str>,
) -> actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec> {
    let mut req = awc::Client::new()
        .ws(format!("ws://127.0.0.1:{}/link", s.node_port))
        .set_header("x-wrs-node", claimed.to_string())
        .set_header("x-wrs-peer", "127.0.0.1:1");
    if let Some(secret) = secret {
        let auth = proof::sign(secret, "GET", "/link", &claimed.to_string());
        req = req.set_header(proof::AUTH_HEADER, auth);
    }
    let (_, conn) = req.connect().await.expect("open a peer link");
    conn
}

fn heartbeat(from: u64, to: u64) -> RaftMessage {
    let mut m = RaftMessage::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    m.term = 1 << 40;
    m.commit = 1 << 40;
    m
}

async fn node_id(s: &Server) -> u64 {
    let v = s.get("/cluster").await.json();
    v["data"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("GET /cluster has no id: {v}"))
}

/// The value of one rejection counter in `/metrics` (0 when absent).
async fn rejected(s: &Server, reason: &str) -> u64 {
    let text = s.get("/metrics").await.text();
    let series = format!("wrs_peer_messages_rejected_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn wait_rejected(s: &Server, reason: &str, at_least: u64) -> u64 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let n = rejected(s, reason).await;
        if n >= at_least || std::time::Instant::now() > deadline {
            return n;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_still_serving(s: &Server, after: &str) {
    let (id, token) = s.create_channel("echo").await;
    let mut ws = s.connect(&id, &token).await;
    ws.send_text("still here").await;
    assert_eq!(ws.recv_text().await, "still here", "echo after {after}");
    assert_eq!(s.get("/readyz").await.status, 200, "/readyz after {after}");
}

#[actix_rt::test]
async fn a_crafted_heartbeat_with_a_huge_commit_is_dropped_and_the_node_keeps_serving() {
    let s = Server::start(&[]).await;
    let me = node_id(&s).await;
    // Claiming to be the node itself passes the membership check; the commit check stops it.
    let mut conn = link(&s, me).await;
    let frame = Frame::raft(&[heartbeat(me, me)]).encode();
    conn.send(WsMessage::Binary(frame)).await.expect("send");
    let n = wait_rejected(&s, "commit_out_of_range", 1).await;
    eprintln!("injected 1 heartbeat (term 2^40, commit 2^40); commit_out_of_range = {n}");
    assert_eq!(n, 1, "the crafted heartbeat was not counted as rejected");
    assert_still_serving(&s, "a crafted heartbeat").await;
}

#[actix_rt::test]
async fn a_term_0_read_index_answer_beyond_the_log_is_dropped_and_the_follower_lives() {
    // Found by tests/fuzz.rs: raft-rs takes a term-0 MsgReadIndexResp as a commit of its index
    // and panics when that is beyond the log. Only a follower acts on one, so: two nodes, and
    // the message sent to the follower in the leader's name (by someone who has the secret).
    let c = Cluster::start(2, &[]).await;
    let leader = c.leader_index().await;
    let follower = &c.nodes[1 - leader];
    let leader_id = node_id(&c.nodes[leader]).await;
    let follower_id = node_id(follower).await;
    let mut m = RaftMessage::default();
    m.set_msg_type(MessageType::MsgReadIndexResp);
    m.from = leader_id;
    m.to = follower_id;
    m.term = 0;
    m.index = 1 << 40;
    m.entries = vec![raft::eraftpb::Entry::default()].into();
    let mut conn = link_with_secret(follower, leader_id, Some(CLUSTER_SECRET)).await;
    conn.send(WsMessage::Binary(Frame::raft(&[m]).encode()))
        .await
        .expect("send");
    let n = wait_rejected(follower, "missing_term", 1).await;
    eprintln!(
        "injected 1 MsgReadIndexResp (term 0, index 2^40) at the follower; missing_term = {n}"
    );
    assert_eq!(n, 1, "the term-0 answer was not counted as rejected");
    assert_still_serving(follower, "a term-0 read index answer").await;
}

#[actix_rt::test]
async fn raft_messages_from_strangers_and_for_other_ids_are_dropped_and_counted() {
    let s = Server::start(&[]).await;
    let me = node_id(&s).await;
    let mut conn = link(&s, 4242).await;
    let stranger = Frame::raft(&[heartbeat(4242, me)]).encode();
    let elsewhere = Frame::raft(&[heartbeat(4242, me + 1)]).encode();
    let forged = Frame::raft(&[heartbeat(me, me)]).encode();
    for f in [stranger, elsewhere, forged] {
        conn.send(WsMessage::Binary(f)).await.expect("send");
    }
    let unknown = wait_rejected(&s, "unknown_sender", 1).await;
    let wrong = wait_rejected(&s, "wrong_recipient", 1).await;
    let forged = wait_rejected(&s, "forged_sender", 1).await;
    eprintln!("injected 3; unknown_sender {unknown}, wrong_recipient {wrong}, forged {forged}");
    assert_eq!((unknown, wrong, forged), (1, 1, 1));
    assert_still_serving(&s, "messages from a stranger").await;
}

#[actix_rt::test]
async fn garbage_and_absurd_lengths_on_a_link_close_that_link_only() {
    let s = Server::start(&[]).await;
    let me = node_id(&s).await;
    let mut inputs: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02 garbage".to_vec(),
        vec![0xff; 64],
        // A Raft frame whose declared part count and length are far beyond what follows.
        [0u32.to_le_bytes().to_vec(), u64::MAX.to_le_bytes().to_vec()].concat(),
        Vec::new(),
    ];
    // A valid frame cut in half.
    let whole = Frame::raft(&[heartbeat(me, me)]).encode();
    inputs.push(whole[..whole.len() / 2].to_vec());
    for (i, bytes) in inputs.into_iter().enumerate() {
        let mut conn = link(&s, me).await;
        let _ = conn.send(WsMessage::Binary(bytes.into())).await;
        assert_still_serving(&s, &format!("bad peer input #{i}")).await;
    }
    eprintln!("injected 5 malformed link frames; the node served after each");
}

#[actix_rt::test]
async fn json_peer_routes_refuse_garbage_with_a_json_4xx() {
    let s = Server::start(&[]).await;
    let client = awc::Client::new();
    for path in [
        "/join",
        "/relay/join",
        "/relay/live",
        "/relay/clients",
        // Not JSON but bincode: garbage there is a 400 too.
        "/relay/publish",
    ] {
        let mut res = client
            .post(format!("http://127.0.0.1:{}{path}", s.node_port))
            .insert_header(("content-type", "application/json"))
            .send_body("{not json")
            .await
            .expect("peer POST");
        let status = res.status().as_u16();
        let body = res.body().await.expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {body:?}"));
        assert_eq!(status, 400, "{path}: {v}");
        assert_json_error(path, &v);
    }
    assert_still_serving(&s, "garbage JSON on the peer port").await;
}

#[actix_rt::test]
async fn publish_and_presence_peer_routes_want_a_proof_before_anything_else() {
    let s = Server::start(&[("WRS_CLUSTER_SECRET", CLUSTER_SECRET)]).await;
    let (id, _) = s.create_channel("pub-sub").await;
    let client = awc::Client::new();
    for path in ["/relay/publish", "/relay/clients"] {
        let mut res = client
            .post(format!("http://127.0.0.1:{}{path}", s.node_port))
            .insert_header(("content-type", "application/json"))
            .send_body(format!(r#"{{"channel":"{id}"}}"#))
            .await
            .expect("peer POST");
        let body = res.body().await.expect("body");
        assert_eq!(res.status().as_u16(), 401, "{path}: {body:?}");
    }
    assert_still_serving(&s, "unauthenticated publish and presence requests").await;
}

/// This machine's address on its default route, if it has one (no packet is sent).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("10.255.255.1:9").ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn reachable(ip: std::net::IpAddr, port: u16) -> bool {
    let addr = std::net::SocketAddr::new(ip, port);
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

#[actix_rt::test]
async fn without_a_cluster_secret_the_peer_port_listens_on_loopback_only() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address on this machine: nothing to prove here");
        return;
    };
    let open = Server::start(&[("WRS_BIND", "0.0.0.0")]).await;
    assert!(reachable(ip, open.api_port), "the API port answers on {ip}");
    assert!(
        !reachable(ip, open.node_port),
        "without WRS_CLUSTER_SECRET the peer port must not answer on {ip}"
    );
    assert_still_serving(&open, "a loopback-only peer port").await;
    let secured = Server::start(&[
        ("WRS_BIND", "0.0.0.0"),
        ("WRS_CLUSTER_SECRET", CLUSTER_SECRET),
    ])
    .await;
    assert!(
        reachable(ip, secured.node_port),
        "with a secret the peer port listens on WRS_BIND"
    );
    eprintln!("{ip}: peer port closed without a secret, open with one");
}

/// The status of a `/link` upgrade to `s` claiming node 7, with `header` as the proof.
async fn link_status(s: &Server, header: Option<(&str, String)>) -> u16 {
    let mut req = awc::Client::new()
        .ws(format!("ws://127.0.0.1:{}/link", s.node_port))
        .set_header("x-wrs-node", "7")
        .set_header("x-wrs-peer", "127.0.0.1:1");
    if let Some((name, value)) = header {
        req = req.set_header(name, value);
    }
    match req.connect().await {
        Ok((res, _)) => res.status().as_u16(),
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
        Err(e) => panic!("link upgrade failed: {e}"),
    }
}

#[actix_rt::test]
async fn the_peer_port_wants_a_fresh_proof_of_the_secret_never_the_secret_itself() {
    let s = Server::start(&[("WRS_CLUSTER_SECRET", CLUSTER_SECRET)]).await;
    let fresh = || proof::sign(CLUSTER_SECRET, "GET", "/link", "7");
    let replayed = fresh();
    type Case<'a> = (&'a str, Option<(&'a str, String)>, u16);
    let cases: Vec<Case> = vec![
        ("no proof", None, 401),
        // The old scheme, the secret in clear, is no longer accepted.
        (
            "the secret in clear",
            Some(("x-wrs-cluster-secret", CLUSTER_SECRET.to_string())),
            401,
        ),
        (
            "a proof under another secret",
            Some((
                proof::AUTH_HEADER,
                proof::sign("guess", "GET", "/link", "7"),
            )),
            401,
        ),
        (
            "a proof for another node id",
            Some((
                proof::AUTH_HEADER,
                proof::sign(CLUSTER_SECRET, "GET", "/link", "8"),
            )),
            401,
        ),
        (
            "a fresh proof",
            Some((proof::AUTH_HEADER, replayed.clone())),
            101,
        ),
        (
            "the same proof again",
            Some((proof::AUTH_HEADER, replayed)),
            401,
        ),
        (
            "another fresh proof",
            Some((proof::AUTH_HEADER, fresh())),
            101,
        ),
    ];
    for (what, header, want) in cases {
        let got = link_status(&s, header).await;
        eprintln!("peer /link with {what}: {got}");
        assert_eq!(got, want, "{what}");
    }
    assert_still_serving(&s, "refused peer proofs").await;
}

/// A TCP listener that records every request it gets and answers `GET /cluster` the way a wrs
/// node would (a leader at its own port) but without the cluster answer: an impostor.
async fn impostor() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    actix_rt::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            actix_rt::spawn(async move {
                let mut buf = vec![0u8; 16 << 10];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                log.lock().expect("log").push(text);
                let body = format!(
                    r#"{{"data":{{"id":77,"leader":77,"term":1,"nodes":[{{"id":77,"api":"127.0.0.1:{port}","peer":"127.0.0.1:{port}","role":"leader"}}]}}}}"#
                );
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(res.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

#[actix_rt::test]
async fn joining_an_address_that_cannot_prove_the_secret_sends_it_neither_token_nor_secret() {
    let s = Server::start(&[
        ("WRS_CLUSTER_SECRET", CLUSTER_SECRET),
        ("WRS_AUTH", "true"),
        ("WRS_AUTH_TOKEN", "the-api-token-0123"),
    ])
    .await;
    let (port, seen) = impostor().await;
    let res = s
        .request(
            "POST",
            &format!("/cluster/join/127.0.0.1:{port}"),
            &[("authorization", "Bearer the-api-token-0123")],
            None,
        )
        .await;
    let body = res.assert_error(502, "join_failed");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("did not prove"),
        "{body}"
    );
    let requests = seen.lock().expect("log").clone();
    eprintln!("the impostor got {} request(s)", requests.len());
    assert_eq!(requests.len(), 1, "only the challenge probe: {requests:?}");
    for r in &requests {
        assert!(r.starts_with("GET /cluster "), "{r}");
        assert!(
            !r.contains("the-api-token-0123"),
            "the API token leaked: {r}"
        );
        assert!(
            !r.contains(CLUSTER_SECRET),
            "the cluster secret leaked: {r}"
        );
    }
    assert_still_serving_with_token(&s).await;
}

#[actix_rt::test]
async fn joining_another_host_without_a_secret_is_refused_before_anything_is_sent() {
    let s = Server::start(&[]).await;
    let res = s
        .request("POST", "/cluster/join/10.9.8.7:8080", &[], None)
        .await;
    let body = res.assert_error(400, "invalid_field");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("WRS_CLUSTER_SECRET"),
        "{body}"
    );
}

async fn assert_still_serving_with_token(s: &Server) {
    let res = s
        .request(
            "POST",
            "/channels?auth=the-api-token-0123",
            &[("content-type", "application/json")],
            Some(br#"{"pattern":"echo"}"#.to_vec()),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
}
