//! Abuse limits: slow consumers, message size, channel count, ping/pong liveness.

use std::time::{Duration, Instant};

use actix_http::ws::Item;
use awc::ws::Message;
use bytes::Bytes;
use serde_json::json;
use wrs_test_support::*;

#[actix_rt::test]
async fn slow_reader_is_disconnected_and_fast_subscriber_gets_everything() {
    let s = Server::start(&[("WRS_CLIENT_QUEUE", "16")]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    let mut publisher = s.connect(&id, &token).await;
    let mut fast = s.connect(&id, &token).await;
    // The slow reader: a raw client with a tiny receive buffer that never reads.
    let slow = raw_upgrade(s.api_port, &Server::connect_path(&id, &token), Some(4096)).await;
    assert_eq!(slow.status, 101, "slow reader upgrade");
    let _slow_socket = slow.stream;
    s.wait_clients(&id, 3, WAIT).await;

    let payload_len = 64 * 1024;
    let max_messages = 1200usize; // 75 MiB: far more than socket buffers + 16 queued messages
    let mut sent = 0usize;
    let mut received = 0usize;
    let mut dropped_at = None;
    let start = Instant::now();
    while sent < max_messages {
        // A batch (half the queue: a burst larger than WRS_CLIENT_QUEUE may legitimately
        // overflow even a fast reader), then the fast subscriber must get all of it, in order.
        for _ in 0..8 {
            let mut msg = vec![b'x'; payload_len];
            let tag = format!("{sent:08}");
            msg[..8].copy_from_slice(tag.as_bytes());
            publisher.send(Message::Binary(Bytes::from(msg))).await;
            sent += 1;
        }
        while received < sent {
            let m = fast.recv_within(Duration::from_secs(10)).await;
            let Msg::Binary(b) = m else {
                panic!("fast subscriber got {m:?}")
            };
            assert_eq!(b.len(), payload_len);
            assert_eq!(
                &b[..8],
                format!("{received:08}").as_bytes(),
                "fast subscriber lost or reordered a message"
            );
            received += 1;
        }
        if s.clients(&id).await == 2 {
            dropped_at = Some(sent);
            break;
        }
    }
    let dropped_at = dropped_at.unwrap_or_else(|| {
        panic!("the slow reader was never disconnected after {sent} messages of 64 KiB")
    });
    eprintln!(
        "slow reader dropped after {dropped_at} messages in {:?}",
        start.elapsed()
    );
    // The channel goes on for the others.
    for batch in 0..4 {
        for i in 0..8 {
            publisher.send_text(&format!("after {batch}.{i}")).await;
        }
        for i in 0..8 {
            assert_eq!(fast.recv_text().await, format!("after {batch}.{i}"));
        }
    }
    assert_eq!(s.clients(&id).await, 2);
}

#[actix_rt::test]
async fn slow_reader_gets_close_4008_when_it_finally_reads() {
    let s = Server::start(&[("WRS_CLIENT_QUEUE", "16")]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    let mut publisher = s.connect(&id, &token).await;
    let slow = raw_upgrade(s.api_port, &Server::connect_path(&id, &token), Some(4096)).await;
    assert_eq!(slow.status, 101);
    let mut slow = slow.into_raw();
    s.wait_clients(&id, 2, WAIT).await;
    let mut sent = 0;
    while s.clients(&id).await == 2 {
        assert!(sent < 1200, "slow reader never disconnected");
        for _ in 0..16 {
            publisher.send_binary(&vec![0u8; 64 * 1024]).await;
            sent += 1;
        }
    }
    // Drain what was buffered: the stream must end with close code 4008 (or just end).
    let code = slow.read_until_close(Duration::from_secs(10)).await;
    match code {
        Some(Some(c)) => assert_eq!(c, 4008, "slow consumer close code"),
        Some(None) => panic!("close frame without a code"),
        None => {
            eprintln!("connection ended without a close frame (allowed when the queue is full)")
        }
    }
}

#[actix_rt::test]
async fn an_echo_client_that_never_reads_its_echoes_is_closed_4008_and_the_others_go_on() {
    let s = Server::start(&[("WRS_CLIENT_QUEUE", "16")]).await;
    let (id, token) = s.create_channel("echo").await;
    let mut reader = s.connect(&id, &token).await;
    let slow = raw_upgrade(s.api_port, &Server::connect_path(&id, &token), Some(4096)).await;
    assert_eq!(slow.status, 101);
    let mut slow = slow.into_raw();
    s.wait_clients(&id, 2, WAIT).await;
    let (mut sent, started) = (0, Instant::now());
    let big = vec![7u8; 64 * 1024];
    while s.clients(&id).await == 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the silent reader was never disconnected ({sent} sent)"
        );
        let send = slow.try_send_frame(true, 2, &big);
        // An error or a timeout: closed by the server, or its socket stopped reading; look
        // at the count again.
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_millis(200), send).await {
            sent += 1;
        }
    }
    eprintln!("the non-reading echo client was dropped after {sent} messages of 64 KiB");
    match slow.read_until_close(Duration::from_secs(10)).await {
        Some(Some(c)) => assert_eq!(c, 4008, "slow consumer close code"),
        Some(None) => panic!("close frame without a code"),
        None => eprintln!("connection ended without a close frame (its queue was full)"),
    }
    reader.send_text("still here").await;
    assert_eq!(reader.recv_text().await, "still here");
}

#[actix_rt::test]
async fn oversized_message_closes_with_1009() {
    let s = Server::start(&[("WRS_MAX_MESSAGE_SIZE", "1024")]).await;
    let (id, token) = s.create_channel("echo").await;
    let mut ws = s.connect(&id, &token).await;
    let ok = "a".repeat(1024);
    ws.send_text(&ok).await;
    assert_eq!(
        ws.recv_text().await,
        ok,
        "a message of exactly the limit passes"
    );
    ws.send_text(&"b".repeat(2048)).await;
    ws.expect_close(1009, WAIT).await;
    s.wait_clients(&id, 0, WAIT).await;
}

#[actix_rt::test]
async fn oversized_fragmented_message_closes_with_1009() {
    let s = Server::start(&[("WRS_MAX_MESSAGE_SIZE", "1024")]).await;
    let (id, token) = s.create_channel("echo").await;
    let mut ws = s.connect(&id, &token).await;
    // 3 fragments of 400 bytes: each is small, the message is 1200 > 1024.
    let part = Bytes::from(vec![b'c'; 400]);
    ws.send(Message::Continuation(Item::FirstText(part.clone())))
        .await;
    ws.send(Message::Continuation(Item::Continue(part.clone())))
        .await;
    // The server may already have closed; ignore a send error here.
    let _ = ws.try_send(Message::Continuation(Item::Last(part))).await;
    ws.expect_close(1009, WAIT).await;
}

#[actix_rt::test]
async fn fragmented_message_within_limit_is_reassembled() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("echo").await;
    let mut ws = s.connect(&id, &token).await;
    ws.send(Message::Continuation(Item::FirstText(Bytes::from_static(
        b"hel",
    ))))
    .await;
    ws.send(Message::Continuation(Item::Continue(Bytes::from_static(
        b"lo ",
    ))))
    .await;
    ws.send(Message::Continuation(Item::Last(Bytes::from_static(
        b"world",
    ))))
    .await;
    assert_eq!(ws.recv_text().await, "hello world");
}

#[actix_rt::test]
async fn default_max_message_size_is_one_mib() {
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("echo").await;
    let mut ws = s.connect(&id, &token).await;
    let big = vec![7u8; 1024 * 1024];
    ws.send_binary(&big).await;
    assert_eq!(ws.recv_binary().await.len(), big.len());
    ws.send_binary(&vec![7u8; 1024 * 1024 + 1]).await;
    ws.expect_close(1009, WAIT).await;
}

#[actix_rt::test]
async fn max_channels_reached_is_503_json() {
    let s = Server::start(&[("WRS_MAX_CHANNELS", "2")]).await;
    let a = s.create(json!({"pattern": "echo"})).await;
    s.create(json!({"pattern": "echo"})).await;
    s.post_json("/channels", &json!({"pattern": "echo"}))
        .await
        .assert_error(503, "channel_limit_reached");
    assert_eq!(s.delete(&format!("/channels/{}", a.id)).await.status, 200);
    s.create(json!({"pattern": "echo"})).await;
}

#[actix_rt::test]
async fn ping_answering_client_stays_connected() {
    let s = Server::start(&[("WRS_PING_INTERVAL", "200"), ("WRS_PING_TIMEOUT", "1000")]).await;
    let (id, token) = s.create_channel("echo").await;
    let mut ws = s.connect(&id, &token).await;
    // Listen (answering pings) for 2.5 s: nothing but pings may arrive.
    ws.expect_silence(Duration::from_millis(2500)).await;
    assert!(
        ws.pings >= 3,
        "server sent only {} pings in 2.5 s",
        ws.pings
    );
    ws.send_text("still here").await;
    assert_eq!(ws.recv_text().await, "still here");
    assert_eq!(s.clients(&id).await, 1);
}

#[actix_rt::test]
async fn silent_client_is_dropped_after_ping_timeout() {
    let s = Server::start(&[("WRS_PING_INTERVAL", "200"), ("WRS_PING_TIMEOUT", "1000")]).await;
    let (id, token) = s.create_channel("echo").await;
    let up = s.raw_upgrade(&Server::connect_path(&id, &token)).await;
    assert_eq!(up.status, 101);
    let mut raw = up.into_raw();
    s.wait_clients(&id, 1, WAIT).await;
    let start = Instant::now();
    // Read (never answer) until the server gives up on us.
    let mut pings = 0;
    let mut close = None;
    while start.elapsed() < Duration::from_secs(6) {
        match raw.read_frame(Duration::from_secs(6)).await {
            Some((0x9, _)) => pings += 1,
            Some((0x8, p)) => {
                close = Some(if p.len() >= 2 {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    0
                });
                break;
            }
            Some((op, _)) => panic!("unexpected frame opcode {op}"),
            None => break,
        }
    }
    let waited = start.elapsed();
    assert!(pings >= 1, "no ping was sent before the drop");
    assert!(
        waited >= Duration::from_millis(700),
        "dropped too early ({waited:?})"
    );
    assert!(waited < Duration::from_secs(5), "not dropped within 5 s");
    if let Some(code) = close {
        assert_eq!(code, 1001, "ping timeout close code");
    }
    s.wait_clients(&id, 0, WAIT).await;
}

/// A subscriber that reads as fast as the socket delivers is not a slow consumer, even when a
/// publisher bursts more small messages than WRS_CLIENT_QUEUE at once: the queue bounds what
/// a client has not accepted, not how many messages arrive in one tick.
#[actix_rt::test]
async fn burst_of_small_messages_does_not_drop_a_reading_subscriber() {
    let s = Server::start(&[("WRS_CLIENT_QUEUE", "64")]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    let mut v = s.connect_n(&id, &token, 2).await;
    let mut sub = v.pop().unwrap();
    let mut publisher = v.pop().unwrap();
    let n = 1000;
    let reader = async move {
        for i in 0..n {
            match sub.recv().await {
                Msg::Text(t) => assert_eq!(t, format!("b{i}")),
                other => panic!("subscriber got {other:?} after {i} messages"),
            }
        }
        sub
    };
    let writer = async move {
        for i in 0..n {
            publisher.send_text(&format!("b{i}")).await;
        }
        publisher
    };
    let (_sub, _publisher) = tokio::join!(reader, writer);
    assert_eq!(s.clients(&id).await, 2);
}

/// One field of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[actix_rt::test]
async fn a_client_that_never_reads_pins_at_most_its_byte_bound_whatever_its_message_size() {
    // Defaults: WRS_CLIENT_QUEUE 1024 messages, WRS_CLIENT_QUEUE_BYTES 4 MiB. Before the byte
    // bound, 1,024 queued echoes of 512 KiB pinned half a gigabyte.
    let s = Server::start(&[]).await;
    let (id, token) = s.create_channel("echo").await;
    let raw = raw_upgrade(s.api_port, &Server::connect_path(&id, &token), Some(4096)).await;
    assert_eq!(raw.status, 101, "upgrade");
    let mut raw = raw.into_raw();
    s.wait_clients(&id, 1, WAIT).await;
    let before = proc_status_kib(s.pid(), "VmRSS:");

    let payload = vec![0x5au8; 512 * 1024];
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x82u8, 0x80 | 127];
    frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let mut sent = 0usize;
    while sent < 400 {
        let write = tokio::io::AsyncWriteExt::write_all(&mut raw.stream, &frame);
        match tokio::time::timeout(Duration::from_secs(2), write).await {
            Ok(Ok(())) => sent += 1,
            _ => break, // the server stopped reading or closed: it gave up on this client
        }
    }
    s.wait_clients(&id, 0, WAIT).await;
    let peak = proc_status_kib(s.pid(), "VmHWM:");
    eprintln!(
        "sent {sent} messages of 512 KiB ({} MiB); RSS before {before} KiB, peak {peak} KiB",
        sent / 2
    );
    assert!(
        sent >= 8,
        "the server took only {sent} messages before giving up"
    );
    let grown_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "a client that never reads grew the server by {grown_mib} MiB (bound: 4 MiB + buffers)"
    );
    // What the client finally reads ends with the slow-consumer close (or just ends).
    if let Some(Some(code)) = raw.read_until_close(Duration::from_secs(10)).await {
        assert_eq!(code, 4008, "slow consumer close code");
    }
}

#[actix_rt::test]
async fn a_stalled_subscriber_of_large_messages_is_cut_while_the_healthy_one_gets_all_in_order() {
    let s = Server::start(&[("WRS_CLIENT_QUEUE_BYTES", "1048576")]).await;
    let (id, token) = s.create_channel("pub-sub").await;
    let mut publisher = s.connect(&id, &token).await;
    let mut healthy = s.connect(&id, &token).await;
    let stalled = raw_upgrade(s.api_port, &Server::connect_path(&id, &token), Some(4096)).await;
    assert_eq!(stalled.status, 101, "stalled subscriber upgrade");
    let _stalled_socket = stalled.stream;
    s.wait_clients(&id, 3, WAIT).await;
    // 256 KiB each: 4 fill the stalled subscriber's 1 MiB byte bound, the message bound (1024)
    // is never near.
    let len = 256 * 1024;
    let mut sent = 0usize;
    while s.clients(&id).await == 3 {
        assert!(sent < 400, "the stalled subscriber was never cut");
        for _ in 0..2 {
            let mut msg = vec![b'y'; len];
            msg[..8].copy_from_slice(format!("{sent:08}").as_bytes());
            publisher.send(Message::Binary(Bytes::from(msg))).await;
            sent += 1;
        }
        for want in sent - 2..sent {
            let m = healthy.recv_within(Duration::from_secs(10)).await;
            let Msg::Binary(b) = m else {
                panic!("healthy subscriber got {m:?}")
            };
            assert_eq!(b.len(), len);
            assert_eq!(
                &b[..8],
                format!("{want:08}").as_bytes(),
                "lost or reordered"
            );
        }
    }
    eprintln!("stalled subscriber cut after {sent} messages of 256 KiB");
    publisher.send_text("after").await;
    assert_eq!(healthy.recv_text().await, "after");
}
