//! `fanout` (fan-in-out): one producer sends `{"type":"request",...}`; the relay hands each
//! request to one worker, round robin, and sets `origin`; the worker answers with the same
//! object as `{"type":"reply",...}`, which the relay routes back to the producer. Measures round
//! trips per second, the round-trip latency, and fairness (min/max share of the workers).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::flow::{Flow, Stop};
use crate::http::{create_channel, delete_channel, HttpConn};
use crate::Common;

fn request(seq: u64, ts: u64, size: usize) -> String {
    let mut s = format!(r#"{{"type":"request","seq":{seq},"t":{ts},"pad":""#);
    let tail = r#""}"#;
    let pad = size.saturating_sub(s.len() + tail.len() + 30); // origin added by the server
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str(tail);
    s
}

fn field(s: &str, name: &str) -> Option<u64> {
    let at = s.find(name)? + name.len();
    let digits: &str = &s[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

async fn worker(mut ws: Ws, stop: Arc<Stop>, count: Arc<AtomicU64>) -> Errors {
    let mut errors = Errors::default();
    loop {
        let msg = tokio::select! {
            biased;
            m = ws.next() => m,
            _ = stop.wait() => break,
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let s = t.as_str();
                if !s.starts_with(r#"{"type":"request""#) {
                    errors.add(format!("worker got {}", &s[..s.len().min(80)]));
                    continue;
                }
                count.fetch_add(1, Ordering::Relaxed);
                let reply = s.replacen(r#""type":"request""#, r#""type":"reply""#, 1);
                if let Err(e) = ws.send(Message::text(reply)).await {
                    errors.add(format!("send: {e}"));
                    break;
                }
            }
            Some(Ok(Message::Close(c))) => {
                if !stop.raised() {
                    errors.add(format!("closed by server: {c:?}"));
                }
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                errors.add(format!("receive: {e}"));
                break;
            }
            None => break,
        }
    }
    let _ = ws.close(None).await;
    errors
}

pub async fn run(
    c: &Common,
    workers: usize,
    size: usize,
    rate: f64,
    window_msgs: u64,
) -> AnyResult<Outcome> {
    let node = &c.nodes[0];
    let mut out = Outcome::new("fanout", format!("1x{workers}"), &c.label, "round trips/s");
    out.param("workers", workers);
    out.param("size", size);
    out.param("rate", rate);
    out.param("window", window_msgs);
    let mut http = HttpConn::connect(node).await?;
    let ch = create_channel(&mut http, "fan-in-out").await?;
    let stop = Arc::new(Stop::default());
    let mut tasks = Vec::new();
    let mut counts = Vec::new();
    for i in 0..workers {
        let ws = ws_connect(c.node(i), &ch.connect, None)
            .await
            .map_err(|e| format!("worker connect: {e}"))?;
        let n = Arc::new(AtomicU64::new(0));
        counts.push(Arc::clone(&n));
        tasks.push(tokio::spawn(worker(ws, Arc::clone(&stop), n)));
    }
    let producer = ws_connect(node, &ch.connect, None)
        .await
        .map_err(|e| format!("producer connect: {e}"))?;
    let (mut sink, mut stream) = producer.split();
    let window = Window::new(c.warmup, c.duration);
    let flow = Arc::new(Flow::default());

    // the producer's reader: replies → latency
    let reader = {
        let (flow, stop) = (Arc::clone(&flow), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut hist = histogram();
            let mut errors = Errors::default();
            let (mut done, mut track) = (0u64, Vec::<u64>::new());
            loop {
                let msg = tokio::select! {
                    biased;
                    m = stream.next() => m,
                    _ = stop.wait() => break,
                };
                let now = now_ns();
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        let s = t.as_str();
                        match (field(s, r#""seq":"#), field(s, r#""t":"#)) {
                            (Some(seq), Some(ts)) if s.starts_with(r#"{"type":"reply""#) => {
                                track.push(seq);
                                if window.contains(now) {
                                    done += 1;
                                    record(&mut hist, now.saturating_sub(ts));
                                }
                                flow.ack();
                            }
                            _ => errors.add(format!("producer got {}", &s[..s.len().min(80)])),
                        }
                    }
                    Some(Ok(Message::Close(c))) => {
                        errors.add(format!("closed by server: {c:?}"));
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        errors.add(format!("receive: {e}"));
                        break;
                    }
                    None => break,
                }
            }
            (stream, done, hist, track, errors)
        })
    };
    let interval = if rate > 0.0 { (1e9 / rate) as u64 } else { 0 };
    let w = window_msgs.max(2);
    let start = now_ns();
    let mut sent = 0u64;
    let waker = {
        let (flow, stop) = (Arc::clone(&flow), Arc::clone(&stop));
        tokio::spawn(async move {
            sleep_until_ns(window.end).await;
            while !stop.raised() {
                flow.kick();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };
    while !window.over() {
        if sent >= w && flow.acked() < sent - w + 1 {
            let need = sent - w / 2;
            if !flow.wait_for(need, &stop, window.end).await || window.over() {
                break;
            }
        }
        let ts = if interval > 0 {
            let due = start + sent * interval;
            paced(due).await
        } else {
            now_ns()
        };
        if let Err(e) = sink.send(Message::text(request(sent, ts, size))).await {
            out.error(format!("send: {e}"));
            break;
        }
        sent += 1;
    }
    let deadline = now_ns() + 2_000_000_000;
    while now_ns() < deadline && flow.acked() < sent {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.raise();
    let _ = waker.await;
    let (done, hist, mut track) = match reader.await {
        Ok((stream, done, hist, track, errors)) => {
            out.merge_errors(errors);
            if let Ok(mut ws) = stream.reunite(sink) {
                let _ = ws.close(None).await;
            }
            (done, hist, track)
        }
        Err(e) => return Err(format!("reader: {e}")),
    };
    for t in tasks {
        if let Ok(e) = t.await {
            out.merge_errors(e);
        }
    }
    track.sort_unstable();
    let n = track.len() as u64;
    track.dedup();
    let dup = n - track.len() as u64;
    let lost = sent.saturating_sub(track.len() as u64);
    let shares: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let (min, max) = (
        shares.iter().copied().min().unwrap_or(0),
        shares.iter().copied().max().unwrap_or(0),
    );
    delete_channel(node, &ch.id).await;
    out.secs = window.secs();
    out.rate = done as f64 / out.secs;
    out.lat = Lat::of(&hist);
    out.extra(
        "fairness",
        if max > 0 {
            min as f64 / max as f64
        } else {
            0.0
        },
    );
    out.extra("min_share", min);
    out.extra("max_share", max);
    out.extra("sent", sent);
    out.extra("lost", lost);
    out.extra("dup", dup);
    out.errors += lost + dup;
    Ok(out)
}
