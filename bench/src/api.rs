//! `api`: concurrent keep-alive HTTP clients, each in a loop of create → get → delete (or, for
//! the read-only cluster plan, GETs of existing channels). With several nodes the three calls of
//! one loop go to three different nodes, as a client behind a load balancer would see it.
//! `--rate` (total requests per second) switches to a fixed schedule; latency is then measured
//! from the scheduled time.
use std::sync::Arc;

use hdrhistogram::Histogram;

use crate::common::*;
use crate::http::HttpConn;
use crate::Common;

#[derive(Clone, Debug)]
pub enum Plan {
    /// create → get → delete
    Crud { pattern: String },
    /// GET of existing channels, round robin
    ReadOnly { ids: Arc<Vec<String>> },
}

pub struct ApiResult {
    pub requests: u64,
    pub hist: Histogram<u64>,
    pub errors: Errors,
}

struct Client {
    conns: Vec<Option<HttpConn>>,
    nodes: Vec<Node>,
}

impl Client {
    async fn call(
        &mut self,
        node: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> AnyResult<(u16, Vec<u8>)> {
        let i = node % self.nodes.len();
        if self.conns[i].is_none() {
            self.conns[i] = Some(HttpConn::connect(&self.nodes[i]).await?);
        }
        let conn = self.conns[i].as_mut().expect("connected");
        conn.request(method, path, body).await
    }
}

#[allow(clippy::too_many_arguments)]
async fn client(
    id: usize,
    nodes: Vec<Node>,
    plan: Plan,
    window: Window,
    interval: u64,
    offset: u64,
) -> ApiResult {
    let mut cl = Client {
        conns: (0..nodes.len()).map(|_| None).collect(),
        nodes,
    };
    let mut r = ApiResult {
        requests: 0,
        hist: histogram(),
        errors: Errors::default(),
    };
    let start = now_ns() + offset;
    let mut k: u64 = 0;
    let due = |k: &mut u64| {
        let d = start + *k * interval;
        *k += 1;
        d
    };
    let body = match &plan {
        Plan::Crud { pattern } => format!(r#"{{"pattern":"{pattern}"}}"#),
        Plan::ReadOnly { .. } => String::new(),
    };
    macro_rules! timed {
        ($node:expr, $method:expr, $path:expr, $body:expr, $want:expr) => {{
            let t0 = if interval > 0 {
                let d = due(&mut k);
                paced(d).await
            } else {
                now_ns()
            };
            let res = cl.call($node, $method, $path, $body).await;
            let now = now_ns();
            let counted = window.contains(now);
            if counted {
                r.requests += 1;
                record(&mut r.hist, now - t0);
            }
            match res {
                Ok((status, body)) if status == $want => Some(body),
                Ok((status, body)) => {
                    if counted {
                        r.errors.add(format!(
                            "{} {}: HTTP {status} {}",
                            $method,
                            $path,
                            String::from_utf8_lossy(&body)
                        ));
                    }
                    None
                }
                Err(e) => {
                    if counted {
                        r.errors.add(format!("{} {}: {e}", $method, $path));
                    }
                    None
                }
            }
        }};
    }
    let mut round = id;
    while !window.over() {
        match &plan {
            Plan::Crud { .. } => {
                let Some(created) = timed!(round, "POST", "/channels", Some(body.as_str()), 201)
                else {
                    round += 1;
                    continue;
                };
                let ch = match parse_created(&created) {
                    Ok(ch) => ch,
                    Err(e) => {
                        r.errors.add(e);
                        continue;
                    }
                };
                let path = format!("/channels/{}", ch.id);
                timed!(round + 1, "GET", &path, None, 200);
                timed!(round + 2, "DELETE", &path, None, 200);
            }
            Plan::ReadOnly { ids } => {
                let path = format!("/channels/{}", ids[round % ids.len()]);
                timed!(round, "GET", &path, None, 200);
            }
        }
        round += 1;
    }
    r
}

/// Run `clients` API clients; returns the merged result and the window.
pub async fn drive(c: &Common, clients: usize, rate: f64, plan: Plan) -> (ApiResult, Window) {
    let window = Window::new(c.warmup, c.duration);
    let interval = if rate > 0.0 {
        (1e9 * clients as f64 / rate) as u64
    } else {
        0
    };
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let offset = interval * i as u64 / clients.max(1) as u64;
            tokio::spawn(client(
                i,
                c.nodes.clone(),
                plan.clone(),
                window,
                interval,
                offset,
            ))
        })
        .collect();
    let mut all = ApiResult {
        requests: 0,
        hist: histogram(),
        errors: Errors::default(),
    };
    for t in tasks {
        match t.await {
            Ok(r) => {
                all.requests += r.requests;
                let _ = all.hist.add(&r.hist);
                all.errors.merge(r.errors);
            }
            Err(e) => all.errors.add(format!("task: {e}")),
        }
    }
    (all, window)
}

pub async fn run(c: &Common, clients: usize, rate: f64, pattern: &str) -> AnyResult<Outcome> {
    let key = if rate > 0.0 {
        format!("{clients}@{rate:.0}")
    } else {
        format!("{clients}")
    };
    let mut out = Outcome::new("api", key, &c.label, "req/s");
    out.param("clients", clients);
    out.param("rate", rate);
    out.param("pattern", pattern);
    let (r, window) = drive(
        c,
        clients,
        rate,
        Plan::Crud {
            pattern: pattern.into(),
        },
    )
    .await;
    out.secs = window.secs();
    out.rate = r.requests as f64 / out.secs;
    out.lat = Lat::of(&r.hist);
    out.merge_errors(r.errors);
    out.extra("offered", rate);
    Ok(out)
}
