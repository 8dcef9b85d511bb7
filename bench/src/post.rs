//! `post`: N publishers send `POST /channels/{id}/messages` (publish over HTTP, one request in
//! flight per keep-alive connection, like a server-side `fetch` loop) to one pub-sub channel
//! with S WebSocket subscribers. Reports deliveries/s counted at the subscribers (the `rate`)
//! and requests/s (`requests_per_s`, 202 answers inside the window), the delivery latency
//! (receive time − the timestamp in the payload), and lost / duplicated messages per publisher.
//! With several `--url`s, publishers and subscribers are spread over the nodes, so most
//! publishes reach a node that is not the channel's owner and are forwarded.
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use crate::flow::{Flow, Stop};
use crate::http::{create_channel, delete_channel, HttpConn};
use crate::relay::{connect_receivers, receiver, Ctx, Mode};
use crate::Common;

#[derive(Clone, Debug)]
pub struct PostArgs {
    pub publishers: usize,
    pub subscribers: usize,
    pub size: usize,
    /// Requests per second per publisher; 0 = closed loop (next request after the answer).
    pub rate: f64,
}

/// What one publisher did: accepted requests (in total, inside the window), the sum of the
/// `delivered` counts the server answered, and its errors.
struct Posted {
    sent: u64,
    in_window: u64,
    delivered: u64,
    errors: Errors,
}

fn delivered_of(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["data"]["delivered"].as_u64()
}

async fn poster(node: Node, path: String, id: usize, ctx: Arc<Ctx>, args: PostArgs) -> Posted {
    let mut done = Posted {
        sent: 0,
        in_window: 0,
        delivered: 0,
        errors: Errors::default(),
    };
    let mut http = match HttpConn::connect(&node).await {
        Ok(h) => h,
        Err(e) => {
            done.errors.add(format!("publisher connect: {e}"));
            return done;
        }
    };
    let interval = if args.rate > 0.0 {
        (1e9 / args.rate) as u64
    } else {
        0
    };
    let start = now_ns();
    let mut failures = 0u64;
    while !ctx.window.over() {
        let ts = if interval > 0 {
            paced(start + done.sent * interval).await
        } else {
            now_ns()
        };
        // The sequence number moves on only with a 202, so a refused request is no "loss".
        let body = payload(id as u32, done.sent, ts, args.size);
        match http
            .request_as("POST", &path, "text/plain", Some(&body))
            .await
        {
            Ok((202, answer)) => {
                if ctx.window.contains(now_ns()) {
                    done.in_window += 1;
                }
                done.sent += 1;
                done.delivered += delivered_of(&answer).unwrap_or(0);
            }
            Ok((status, answer)) => {
                failures += 1;
                let text = String::from_utf8_lossy(&answer);
                done.errors
                    .add(format!("HTTP {status}: {}", &text[..text.len().min(120)]));
            }
            Err(e) => {
                failures += 1;
                done.errors.add(format!("publish: {e}"));
            }
        }
        if failures > 0 && failures.is_multiple_of(100) {
            // A server that refuses everything should not be hammered in a tight loop.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    done
}

/// The channel token from a connect path `/channels/{id}/connect?token=T`.
fn token_of(connect: &str) -> String {
    connect
        .split("token=")
        .nth(1)
        .and_then(|t| t.split('&').next())
        .unwrap_or("")
        .to_string()
}

pub async fn run(c: &Common, args: PostArgs) -> AnyResult<Outcome> {
    let node = &c.nodes[0];
    let mut key = format!("{}x{}", args.publishers, args.subscribers);
    if args.rate > 0.0 {
        key = format!("{key}@{:.0}", args.rate);
    }
    let mut out = Outcome::new("post", key, &c.label, "deliveries/s");
    out.param("publishers", args.publishers);
    out.param("subscribers", args.subscribers);
    out.param("size", args.size);
    out.param("rate_per_publisher", args.rate);
    out.param("nodes", c.nodes.len());
    let mut http = HttpConn::connect(node).await?;
    let ch = create_channel(&mut http, "pub-sub").await?;
    let path = format!(
        "/channels/{}/messages?token={}",
        ch.id,
        token_of(&ch.connect)
    );

    // Subscribers first, so every message has its full audience.
    let subs = connect_receivers(
        &c.nodes,
        &ch.connect,
        args.subscribers,
        "subscriber",
        &mut out,
    )
    .await;
    if subs.is_empty() {
        delete_channel(node, &ch.id).await;
        return Err(format!(
            "post: no subscriber could connect ({})",
            out.error_samples.join("; ")
        ));
    }
    let nsubs = subs.len() as u64;
    let publishers = args.publishers.max(1);
    let ctx = Arc::new(Ctx {
        mode: Mode::PubSub,
        publishers,
        window: Window::new(c.warmup, c.duration),
        flows: (0..publishers).map(|_| Flow::default()).collect(),
        stop: Stop::default(),
    });
    let recv_tasks: Vec<_> = subs
        .into_iter()
        .map(|ws| tokio::spawn(receiver(ws, Arc::clone(&ctx))))
        .collect();
    // Publisher i posts to node i (round robin over --url).
    let pub_tasks: Vec<_> = (0..publishers)
        .map(|i| {
            let (node, path) = (c.node(i).clone(), path.clone());
            tokio::spawn(poster(node, path, i, Arc::clone(&ctx), args.clone()))
        })
        .collect();

    let mut sent = Vec::new();
    let (mut requests_in_window, mut delivered_reported) = (0u64, 0u64);
    for t in pub_tasks {
        match t.await {
            Ok(p) => {
                sent.push(p.sent);
                requests_in_window += p.in_window;
                delivered_reported += p.delivered;
                out.merge_errors(p.errors);
            }
            Err(e) => out.error(format!("publisher task: {e}")),
        }
    }
    // Wait for the stragglers (≤ 2 s), then stop the subscribers.
    let expected: u64 = sent.iter().sum::<u64>() * nsubs;
    let deadline = now_ns() + 2_000_000_000;
    while now_ns() < deadline && ctx.flows.iter().map(Flow::acked).sum::<u64>() < expected {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ctx.stop.raise();

    let mut hist = histogram();
    let (mut in_window, mut lost, mut dup) = (0u64, 0u64, 0u64);
    for t in recv_tasks {
        let st = match t.await {
            Ok(st) => st,
            Err(e) => {
                out.error(format!("subscriber task: {e}"));
                continue;
            }
        };
        in_window += st.in_window;
        if let Some(h) = &st.hist {
            let _ = hist.add(h);
        }
        for (p, tr) in st.seq.iter().enumerate() {
            lost += tr.lost_after(sent.get(p).copied().unwrap_or(0));
            dup += tr.dup;
        }
        out.merge_errors(st.errors);
    }
    delete_channel(node, &ch.id).await;

    out.secs = ctx.window.secs();
    out.rate = in_window as f64 / out.secs;
    out.lat = Lat::of(&hist);
    out.extra("requests_per_s", requests_in_window as f64 / out.secs);
    out.extra("sent", sent.iter().sum::<u64>());
    out.extra("delivered_reported", delivered_reported);
    out.extra("lost", lost);
    out.extra("dup", dup);
    out.extra("connected", nsubs);
    out.errors += lost + dup;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_connect_path() {
        assert_eq!(token_of("/channels/ab/connect?token=t0k"), "t0k");
        assert_eq!(token_of("/channels/ab/connect?token=t0k&auth=x"), "t0k");
        assert_eq!(token_of("/channels/ab/connect"), "");
        assert_eq!(delivered_of(br#"{"data":{"delivered":4}}"#), Some(4));
    }
}
