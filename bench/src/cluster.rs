//! `cluster`: the four test plans of the thesis' table 12, against a list of nodes (`--url` given
//! once per node). With one URL it measures a single node; given a cluster's nodes, each client
//! spreads its calls and connections over them, so channels created on one node are read,
//! joined and deleted through the others, and the clients of one channel sit on different nodes.
//!
//! - `api` (500 clients): create → get → delete, the three calls on three different nodes (the
//!   thesis' plan only created and read; the delete keeps the channel count bounded).
//! - `ws` (200 clients): channels created beforehand, 10 clients per pub-sub channel spread over
//!   the nodes, each sending `--rate` messages per second; every message goes to 9 others.
//! - `mixed` (50 clients): each client loops create → connect two WebSockets (on two other
//!   nodes) → 10 messages from one to the other, each awaited → close → delete.
//! - `readonly` (500 clients): GETs of 100 channels created beforehand.
//!
//! Operations are HTTP requests, WebSocket connects and message deliveries; each has a latency.
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Message;

use crate::api::{self, Plan};
use crate::common::*;
use crate::flow::Stop;
use crate::http::{create_channel, delete_channel, HttpConn};
use crate::Common;

pub const PLANS: [&str; 4] = ["api", "ws", "mixed", "readonly"];

pub fn default_clients(plan: &str) -> usize {
    match plan {
        "ws" => 200,
        "mixed" => 50,
        _ => 500,
    }
}

pub async fn run(
    c: &Common,
    plan: &str,
    clients: usize,
    rate: f64,
    size: usize,
) -> AnyResult<Outcome> {
    let n = c.nodes.len();
    let mut out = Outcome::new("cluster", format!("{plan}/{n}n"), &c.label, "ops/s");
    out.param("plan", plan);
    out.param("nodes", n);
    out.param("clients", clients);
    out.param("rate", rate);
    out.param("size", size);
    let (ops, hist, errors, secs) = match plan {
        "api" => {
            let (r, w) = api::drive(
                c,
                clients,
                rate,
                Plan::Crud {
                    pattern: "pub-sub".into(),
                },
            )
            .await;
            (r.requests, r.hist, r.errors, w.secs())
        }
        "readonly" => {
            let ids: Vec<String> = create_many(c, 100)
                .await?
                .into_iter()
                .map(|ch| ch.id)
                .collect();
            let (r, w) = api::drive(
                c,
                clients,
                rate,
                Plan::ReadOnly {
                    ids: Arc::new(ids.clone()),
                },
            )
            .await;
            for (i, id) in ids.iter().enumerate() {
                delete_channel(c.node(i), id).await;
            }
            (r.requests, r.hist, r.errors, w.secs())
        }
        "ws" => ws_plan(c, clients, if rate > 0.0 { rate } else { 10.0 }, size).await?,
        "mixed" => mixed_plan(c, clients, size).await,
        other => return Err(format!("unknown cluster plan {other}; one of {PLANS:?}")),
    };
    out.secs = secs;
    out.rate = ops as f64 / secs;
    out.lat = Lat::of(&hist);
    out.merge_errors(errors);
    out.extra("ops", ops);
    out.extra(
        "error_pct",
        100.0 * out.errors as f64 / (ops + out.errors).max(1) as f64,
    );
    Ok(out)
}

type PlanResult = (u64, Histogram<u64>, Errors, f64);

/// Create `n` pub-sub channels, round robin over the nodes, 20 at a time (a cluster commits
/// each one through Raft, which may take a while).
async fn create_many(c: &Common, n: usize) -> AnyResult<Vec<Channel>> {
    let mut out = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(20) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let node = c.node(i).clone();
            set.spawn(async move {
                let mut http = HttpConn::connect(&node).await?;
                create_channel(&mut http, "pub-sub").await
            });
        }
        while let Some(r) = set.join_next().await {
            out.push(r.map_err(|e| e.to_string())??);
        }
    }
    Ok(out)
}

async fn ws_plan(c: &Common, clients: usize, rate: f64, size: usize) -> AnyResult<PlanResult> {
    const GROUP: usize = 10;
    let groups = clients.div_ceil(GROUP);
    let chans = create_many(c, groups).await?;
    let mut errors = Errors::default();
    let mut socks = Vec::new();
    for j in 0..clients {
        match ws_connect(c.node(j), &chans[j / GROUP].connect, None).await {
            Ok(ws) => socks.push((j, ws)),
            Err(e) => errors.add(format!("connect: {e}")),
        }
    }
    let window = Window::new(c.warmup, c.duration);
    let stop = Arc::new(Stop::default());
    let interval = (1e9 / rate) as u64;
    let mut tasks = Vec::new();
    for (j, ws) in socks {
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let me = (j % GROUP) as u32;
            let (mut sink, mut stream) = ws.split();
            let sender = tokio::spawn(async move {
                let start = now_ns() + interval * me as u64 / GROUP as u64;
                let mut seq = 0u64;
                let mut errors = Errors::default();
                while !window.over() {
                    let due = start + seq * interval;
                    let ts = paced(due).await;
                    if let Err(e) = sink.send(Message::text(payload(me, seq, ts, size))).await {
                        errors.add(format!("send: {e}"));
                        break;
                    }
                    seq += 1;
                }
                (sink, seq, errors)
            });
            let mut hist = histogram();
            let mut errors = Errors::default();
            let mut track = vec![SeqTrack::default(); GROUP];
            let mut ops = 0u64;
            loop {
                let m = tokio::select! {
                    biased;
                    m = stream.next() => m,
                    _ = stop.wait() => break,
                };
                let now = now_ns();
                match m {
                    Some(Ok(Message::Text(t))) => match parse_payload(t.as_bytes()) {
                        Some((p, seq, ts)) if (p as usize) < GROUP => {
                            track[p as usize].see(seq);
                            if window.contains(now) {
                                ops += 1;
                                record(&mut hist, now.saturating_sub(ts));
                            }
                        }
                        _ => errors.add("unparsable payload"),
                    },
                    Some(Ok(Message::Close(cf))) => {
                        errors.add(format!("closed by server: {cf:?}"));
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        errors.add(format!("receive: {e}"));
                        break;
                    }
                    None => {
                        errors.add("connection ended");
                        break;
                    }
                }
            }
            let (sink, sent, e) = sender.await.expect("sender");
            errors.merge(e);
            if let Ok(mut ws) = stream.reunite(sink) {
                let _ = ws.close(None).await;
            }
            (j, sent, track, ops, hist, errors)
        }));
    }
    sleep_until_ns(window.end + 1_000_000_000).await;
    stop.raise();
    let mut hist = histogram();
    let mut ops = 0;
    let mut sent = vec![0u64; clients];
    let mut tracks = Vec::new();
    for t in tasks {
        if let Ok((j, s, track, o, h, e)) = t.await {
            sent[j] = s;
            tracks.push((j, track));
            ops += o;
            let _ = hist.add(&h);
            errors.merge(e);
        }
    }
    // lost: each receiver should have every message of the 9 others in its group
    let mut lost = 0;
    for (j, track) in &tracks {
        let g = j / GROUP;
        for (p, tr) in track.iter().enumerate() {
            let sender = g * GROUP + p;
            if sender != *j && sender < clients {
                lost += tr.lost_after(sent[sender]);
                for _ in 0..tr.dup {
                    errors.add("duplicate message");
                }
            }
        }
    }
    for _ in 0..lost.min(1000) {
        errors.add("lost message");
    }
    errors.count += lost.saturating_sub(1000);
    for (g, ch) in chans.iter().enumerate() {
        delete_channel(c.node(g), &ch.id).await;
    }
    Ok((ops, hist, errors, window.secs()))
}

async fn mixed_plan(c: &Common, clients: usize, size: usize) -> PlanResult {
    let window = Window::new(c.warmup, c.duration);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let nodes = c.nodes.clone();
        tasks.push(tokio::spawn(async move {
            let node = |k: usize| &nodes[k % nodes.len()];
            let mut hist = histogram();
            let mut errors = Errors::default();
            let mut ops = 0u64;
            let mut round = i;
            let rec = |t0: u64, ops: &mut u64, hist: &mut Histogram<u64>| {
                let now = now_ns();
                if window.contains(now) {
                    *ops += 1;
                    record(hist, now - t0);
                }
            };
            let mut http = Vec::new();
            for n in nodes.iter() {
                http.push(HttpConn::connect(n).await.ok());
            }
            while !window.over() {
                round += 1;
                let a = round % nodes.len();
                let Some(conn) = http[a].as_mut() else {
                    errors.add("no HTTP connection");
                    break;
                };
                let t0 = now_ns();
                let ch = match create_channel(conn, "pub-sub").await {
                    Ok(ch) => ch,
                    Err(e) => {
                        errors.add(e);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                rec(t0, &mut ops, &mut hist);
                let t0 = now_ns();
                let pair = tokio::try_join!(
                    ws_connect(node(round + 1), &ch.connect, None),
                    ws_connect(node(round + 2), &ch.connect, None)
                );
                match pair {
                    Ok((mut tx, mut rx)) => {
                        rec(t0, &mut ops, &mut hist);
                        for seq in 0..10u64 {
                            let t0 = now_ns();
                            if let Err(e) = tx.send(Message::text(payload(0, seq, t0, size))).await
                            {
                                errors.add(format!("send: {e}"));
                                break;
                            }
                            match tokio::time::timeout(Duration::from_secs(5), rx.next()).await {
                                Ok(Some(Ok(Message::Text(t))))
                                    if parse_payload(t.as_bytes()).map(|p| p.1) == Some(seq) =>
                                {
                                    rec(t0, &mut ops, &mut hist)
                                }
                                Ok(other) => {
                                    errors.add(format!("expected message {seq}, got {other:?}"));
                                    break;
                                }
                                Err(_) => {
                                    errors.add("message not delivered within 5 s");
                                    break;
                                }
                            }
                        }
                        let _ = tx.close(None).await;
                        let _ = rx.close(None).await;
                    }
                    Err(e) => errors.add(format!("connect: {e}")),
                }
                let t0 = now_ns();
                let path = format!("/channels/{}", ch.id);
                if let Some(conn) = http[a].as_mut() {
                    match conn.request("DELETE", &path, None).await {
                        Ok((200, _)) => rec(t0, &mut ops, &mut hist),
                        Ok((s, b)) => {
                            errors.add(format!("DELETE: HTTP {s} {}", String::from_utf8_lossy(&b)))
                        }
                        Err(e) => errors.add(format!("DELETE: {e}")),
                    }
                }
            }
            (ops, hist, errors)
        }));
    }
    let mut hist = histogram();
    let mut ops = 0;
    let mut errors = Errors::default();
    for t in tasks {
        if let Ok((o, h, e)) = t.await {
            ops += o;
            let _ = hist.add(&h);
            errors.merge(e);
        }
    }
    (ops, hist, errors, window.secs())
}
