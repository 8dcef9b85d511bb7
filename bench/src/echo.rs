//! `echo`: N clients on one echo channel, each in a closed loop (send, wait for the echo, repeat).
//! With `--rate` (total messages per second) each client sends on a fixed schedule and the
//! round trip is measured from the scheduled time.
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;
use crate::http::{create_channel, delete_channel, HttpConn};
use crate::Common;

async fn client(
    mut ws: Ws,
    id: u32,
    window: Window,
    size: usize,
    interval: u64,
    clients: u64,
) -> (u64, hdrhistogram::Histogram<u64>, Errors) {
    let mut hist = histogram();
    let mut errors = Errors::default();
    let mut n = 0u64;
    let mut done = 0u64;
    // spread the clients' schedules over one interval
    let start = now_ns() + interval * id as u64 / clients.max(1);
    while !window.over() {
        let t0 = if interval > 0 {
            let due = start + n * interval;
            paced(due).await
        } else {
            now_ns()
        };
        if let Err(e) = ws.send(Message::text(payload(id, n, t0, size))).await {
            errors.add(format!("send: {e}"));
            break;
        }
        n += 1;
        let reply = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => break Ok(t),
                Some(Ok(Message::Close(c))) => break Err(format!("closed by server: {c:?}")),
                Some(Ok(_)) => continue,
                Some(Err(e)) => break Err(format!("receive: {e}")),
                None => break Err("connection ended".into()),
            }
        };
        let now = now_ns();
        match reply {
            Ok(t) => {
                if parse_payload(t.as_bytes()).map(|(p, s, _)| (p, s)) != Some((id, n - 1)) {
                    errors.add("echo does not match the message sent");
                }
                if window.contains(now) {
                    done += 1;
                    record(&mut hist, now - t0);
                }
            }
            Err(e) => {
                errors.add(e);
                break;
            }
        }
    }
    let _ = ws.close(None).await;
    (done, hist, errors)
}

pub async fn run(c: &Common, clients: usize, size: usize, rate: f64) -> AnyResult<Outcome> {
    let node = &c.nodes[0];
    let mut out = Outcome::new("echo", format!("{clients}"), &c.label, "msg/s");
    out.param("clients", clients);
    out.param("size", size);
    out.param("rate", rate);
    let mut http = HttpConn::connect(node).await?;
    let ch = create_channel(&mut http, "echo").await?;
    let mut socks = Vec::new();
    for i in 0..clients {
        match ws_connect(c.node(i), &ch.connect, None).await {
            Ok(ws) => socks.push(ws),
            Err(e) => out.error(format!("connect: {e}")),
        }
    }
    if socks.is_empty() {
        return Err(format!(
            "echo: no client connected ({:?})",
            out.error_samples
        ));
    }
    let window = Window::new(c.warmup, c.duration);
    let interval = if rate > 0.0 {
        (1e9 * socks.len() as f64 / rate) as u64
    } else {
        0
    };
    let tasks: Vec<_> = socks
        .into_iter()
        .enumerate()
        .map(|(i, ws)| tokio::spawn(client(ws, i as u32, window, size, interval, clients as u64)))
        .collect();
    let mut hist = histogram();
    let mut done = 0;
    for t in tasks {
        match t.await {
            Ok((d, h, e)) => {
                done += d;
                let _ = hist.add(&h);
                out.merge_errors(e);
            }
            Err(e) => out.error(format!("task: {e}")),
        }
    }
    delete_channel(node, &ch.id).await;
    out.secs = window.secs();
    out.rate = done as f64 / out.secs;
    out.lat = Lat::of(&hist);
    Ok(out)
}
