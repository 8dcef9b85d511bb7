//! `pubsub` and `pushpull`: P publishers → S receivers on one channel.
//!
//! Every payload carries (publisher, sequence number, send timestamp). Receivers record the
//! delivery latency (receive time − timestamp; in fixed-rate mode the timestamp is the
//! *scheduled* send time, so a stalled server cannot hide its backlog: no coordinated omission),
//! count deliveries inside the window, and track per-publisher sequence numbers to count lost
//! and duplicated messages. After the window the publishers stop and the receivers drain for up
//! to two seconds, so messages still in flight are not counted as lost.
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::flow::{Flow, Stop};
use crate::http::{create_channel, delete_channel, HttpConn};
use crate::Common;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    PubSub,
    PushPull,
}

#[derive(Clone, Debug)]
pub struct RelayArgs {
    pub publishers: usize,
    pub receivers: usize,
    pub size: usize,
    /// Messages per second per publisher; 0 = as fast as the window allows.
    pub rate: f64,
    pub window: u64,
    /// Every client connects to the node the create response's `url` names (with
    /// `WRS_CONNECT_TO_OWNER` on, the channel's owner) instead of round robin over `--url`s.
    pub affine: bool,
    /// Publishers on the first node, receivers round robin over the others (with one node,
    /// everything on it).
    pub cross: bool,
}

/// What the receivers share (the `post` scenario uses the same receivers).
pub(crate) struct Ctx {
    pub mode: Mode,
    pub publishers: usize,
    pub window: Window,
    pub flows: Vec<Flow>,
    pub stop: Stop,
}

#[derive(Default)]
pub(crate) struct RecvStats {
    pub in_window: u64,
    pub total: u64,
    pub hist: Option<Histogram<u64>>,
    pub seq: Vec<SeqTrack>,
    /// Push-pull only: every sequence number seen (duplicates are found by sorting).
    pub seen: Vec<u64>,
    pub errors: Errors,
}

pub(crate) async fn receiver(mut ws: Ws, ctx: Arc<Ctx>) -> RecvStats {
    let mut st = RecvStats {
        hist: Some(histogram()),
        seq: vec![SeqTrack::default(); ctx.publishers],
        ..RecvStats::default()
    };
    let hist = st.hist.as_mut().expect("hist");
    loop {
        let msg = tokio::select! {
            biased;
            m = ws.next() => m,
            _ = ctx.stop.wait() => break,
        };
        let now = now_ns();
        let data = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                st.errors.add("unexpected binary frame");
                continue;
            }
            Some(Ok(Message::Close(c))) => {
                if !ctx.stop.raised() {
                    st.errors.add(format!("closed by server: {c:?}"));
                }
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                st.errors.add(format!("receive: {e}"));
                break;
            }
            None => {
                st.errors.add("connection ended");
                break;
            }
        };
        let Some((publisher, seq, ts)) = parse_payload(data.as_bytes()) else {
            st.errors.add("unparsable payload");
            continue;
        };
        let p = publisher as usize;
        if p >= ctx.publishers {
            st.errors.add("unknown publisher id");
            continue;
        }
        st.total += 1;
        if ctx.window.contains(now) {
            st.in_window += 1;
            record(hist, now.saturating_sub(ts));
        }
        match ctx.mode {
            Mode::PubSub => st.seq[p].see(seq),
            Mode::PushPull => st.seen.push(seq),
        }
        ctx.flows[p].ack();
    }
    let _ = ws.close(None).await;
    st
}

/// A publisher: sends until the window ends; returns (sent in total, sent inside the window).
async fn publisher(
    ws: Ws,
    id: usize,
    ctx: Arc<Ctx>,
    args: RelayArgs,
    fanout: u64,
) -> (u64, u64, Errors) {
    let (mut sink, mut stream) = ws.split();
    let mut errors = Errors::default();
    // A pub-sub publisher also receives the other publishers' messages: drain them.
    let drain_ctx = Arc::clone(&ctx);
    let drain = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                m = stream.next() => match m {
                    Some(Ok(_)) => {}
                    _ => break,
                },
                _ = drain_ctx.stop.wait() => break,
            }
        }
        stream
    });
    let flow = &ctx.flows[id];
    let w = args.window.max(2);
    let start = now_ns();
    let interval = if args.rate > 0.0 {
        (1e9 / args.rate) as u64
    } else {
        0
    };
    let (mut sent, mut in_window) = (0u64, 0u64);
    while !ctx.window.over() {
        // at most `w` messages per receiver in flight; when blocked, wait for half of them.
        if sent >= w && flow.acked() < (sent - w + 1) * fanout {
            let need = (sent - w / 2) * fanout;
            if !flow.wait_for(need, &ctx.stop, ctx.window.end).await {
                break;
            }
            if ctx.window.over() {
                break;
            }
        }
        let ts = if interval > 0 {
            let due = start + sent * interval;
            paced(due).await
        } else {
            now_ns()
        };
        if ctx.window.contains(now_ns()) {
            in_window += 1;
        }
        if let Err(e) = sink
            .send(Message::text(payload(id as u32, sent, ts, args.size)))
            .await
        {
            errors.add(format!("send: {e}"));
            break;
        }
        sent += 1;
    }
    // the drain ends with the stop signal, which comes after every publisher returned
    tokio::spawn(async move {
        if let Ok(stream) = drain.await {
            if let Ok(mut ws) = stream.reunite(sink) {
                let _ = ws.close(None).await;
            }
        }
    });
    (sent, in_window, errors)
}

/// Connects `n` WebSocket clients to `connect`, round robin over `nodes`, 100 at a time;
/// a failed connect is an error of `out` (named `what`) and the client is left out.
pub async fn connect_receivers(
    nodes: &[Node],
    connect: &str,
    n: usize,
    what: &str,
    out: &mut Outcome,
) -> Vec<Ws> {
    let mut clients = Vec::with_capacity(n);
    let mut pending = JoinSet::new();
    for i in 0..n {
        let (node, path) = (nodes[i % nodes.len()].clone(), connect.to_owned());
        pending.spawn(async move { ws_connect(&node, &path, None).await });
        if pending.len() >= 100 || i + 1 == n {
            while let Some(r) = pending.join_next().await {
                match r.map_err(|e| e.to_string()).and_then(|r| r) {
                    Ok(ws) => clients.push(ws),
                    Err(e) => out.error(format!("{what} connect: {e}")),
                }
            }
        }
    }
    clients
}

/// The node the create response's `url` names (plain `ws://` only, like every connect here).
fn affine_node(ch: &Channel) -> AnyResult<Node> {
    let url = ch
        .url
        .as_deref()
        .ok_or("the create response has no url to follow")?;
    if !url.starts_with("ws://") {
        return Err(format!(
            "the url {url} is not ws:// (wrs-bench speaks plain ws only)"
        ));
    }
    Node::parse(url)
}

pub async fn run(c: &Common, mode: Mode, args: RelayArgs) -> AnyResult<Outcome> {
    let node = &c.nodes[0];
    let (scenario, pattern, unit) = match mode {
        Mode::PubSub => ("pubsub", "pub-sub", "deliveries/s"),
        Mode::PushPull => ("pushpull", "push-pull", "msg/s"),
    };
    let mut key = match mode {
        Mode::PubSub => format!("{}x{}", args.publishers, args.receivers),
        Mode::PushPull => format!("1x{}", args.receivers),
    };
    if args.rate > 0.0 {
        key = format!("{key}@{:.0}", args.rate);
    }
    let mut out = Outcome::new(scenario, key, &c.label, unit);
    out.param("publishers", args.publishers);
    out.param("receivers", args.receivers);
    out.param("size", args.size);
    out.param("rate_per_publisher", args.rate);
    out.param("window", args.window);
    if args.affine {
        out.param("affine", true);
    }
    if args.cross {
        out.param("cross", true);
    }
    let mut http = HttpConn::connect(node).await?;
    let ch = create_channel(&mut http, pattern).await?;
    let targets = if args.affine {
        match affine_node(&ch) {
            Ok(n) => vec![n],
            Err(e) => {
                delete_channel(node, &ch.id).await;
                return Err(format!("{scenario} --affine: {e}"));
            }
        }
    } else {
        c.nodes.clone()
    };

    let (pub_targets, recv_targets) = if args.cross && targets.len() > 1 {
        (targets[..1].to_vec(), targets[1..].to_vec())
    } else {
        (targets.clone(), targets)
    };
    // Receivers first, so every message has its full audience.
    let receivers = connect_receivers(
        &recv_targets,
        &ch.connect,
        args.receivers,
        "receiver",
        &mut out,
    )
    .await;
    let mut pubs = Vec::with_capacity(args.publishers);
    for i in 0..args.publishers {
        match ws_connect(&pub_targets[i % pub_targets.len()], &ch.connect, None).await {
            Ok(ws) => pubs.push(ws),
            Err(e) => out.error(format!("publisher connect: {e}")),
        }
    }
    if receivers.is_empty() || pubs.is_empty() {
        delete_channel(node, &ch.id).await;
        return Err(format!(
            "{scenario}: could not connect ({})",
            out.error_samples.join("; ")
        ));
    }
    let nrecv = receivers.len() as u64;
    let fanout = match mode {
        Mode::PubSub => nrecv,
        Mode::PushPull => 1,
    };
    let ctx = Arc::new(Ctx {
        mode,
        publishers: pubs.len(),
        window: Window::new(c.warmup, c.duration),
        flows: (0..pubs.len()).map(|_| Flow::default()).collect(),
        stop: Stop::default(),
    });
    let recv_tasks: Vec<_> = receivers
        .into_iter()
        .map(|ws| tokio::spawn(receiver(ws, Arc::clone(&ctx))))
        .collect();
    let pub_tasks: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(i, ws)| tokio::spawn(publisher(ws, i, Arc::clone(&ctx), args.clone(), fanout)))
        .collect();

    // Publishers stop at the end of the window; then wait for the stragglers (≤ 2 s).
    sleep_until_ns(ctx.window.end).await;
    let mut sent = Vec::new();
    let mut sent_in_window = 0;
    let deadline = now_ns() + 2_000_000_000;
    let waker = {
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            // a publisher blocked on its window must notice the end of the run
            loop {
                for f in &ctx.flows {
                    f.kick();
                }
                if ctx.stop.raised() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    for t in pub_tasks {
        match t.await {
            Ok((s, w, e)) => {
                sent.push(s);
                sent_in_window += w;
                out.merge_errors(e);
            }
            Err(e) => out.error(format!("publisher task: {e}")),
        }
    }
    let expected: u64 = sent.iter().sum::<u64>() * fanout;
    while now_ns() < deadline && ctx.flows.iter().map(Flow::acked).sum::<u64>() < expected {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ctx.stop.raise();
    let _ = waker.await;

    let mut hist = histogram();
    let (mut in_window, mut lost, mut dup) = (0u64, 0u64, 0u64);
    let mut per_recv: Vec<u64> = Vec::new();
    let mut seen: Vec<u64> = Vec::new();
    for t in recv_tasks {
        let st = match t.await {
            Ok(st) => st,
            Err(e) => {
                out.error(format!("receiver task: {e}"));
                continue;
            }
        };
        in_window += st.in_window;
        per_recv.push(st.total);
        if let Some(h) = &st.hist {
            let _ = hist.add(h);
        }
        if mode == Mode::PubSub {
            for (p, tr) in st.seq.iter().enumerate() {
                lost += tr.lost_after(sent.get(p).copied().unwrap_or(0));
                dup += tr.dup;
            }
        } else {
            seen.extend_from_slice(&st.seen);
        }
        out.merge_errors(st.errors);
    }
    if mode == Mode::PushPull {
        seen.sort_unstable();
        let before = seen.len() as u64;
        seen.dedup();
        dup = before - seen.len() as u64;
        lost = sent.iter().sum::<u64>().saturating_sub(seen.len() as u64);
        let (min, max) = (
            per_recv.iter().copied().min().unwrap_or(0),
            per_recv.iter().copied().max().unwrap_or(0),
        );
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
    }
    delete_channel(node, &ch.id).await;

    out.secs = ctx.window.secs();
    out.rate = in_window as f64 / out.secs;
    out.lat = Lat::of(&hist);
    out.extra("published_per_s", sent_in_window as f64 / out.secs);
    out.extra("sent", sent.iter().sum::<u64>());
    out.extra("lost", lost);
    out.extra("dup", dup);
    out.extra("connected", nrecv);
    // lost and duplicated messages are errors of the relay
    out.errors += lost + dup;
    Ok(out)
}
