//! `wrs-bench`: a load generator that drives a running wrs (or the baseline relay, or any server
//! with the same REST + WebSocket shape) over real sockets, as a user's clients would.
//!
//! Every run is bounded: a warm-up, a measurement window (`--duration`), and a short drain.
//! Results print as a table row and, with `--json FILE`, are appended to FILE as one JSON line;
//! `wrs-bench report` turns such a file into docs/benchmarks.md with SVG plots.
mod api;
mod cluster;
mod common;
mod conns;
mod echo;
mod fanout;
mod flow;
mod http;
mod post;
mod relay;
mod report;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::common::{table_header, table_row, AnyResult, Node, Outcome};

#[derive(Parser)]
#[command(
    name = "wrs-bench",
    version,
    about = "Load generator for wrs (WebSocket Relay Service)"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Server URL; give it once per node (the cluster scenario spreads over all of them).
    #[arg(long = "url", global = true, default_value = "http://127.0.0.1:18080")]
    urls: Vec<String>,
    /// Name of the server in the results (wrs, baseline, ...).
    #[arg(long, global = true, default_value = "wrs")]
    label: String,
    /// Seconds measured (after the warm-up).
    #[arg(long, global = true, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before the measurement starts.
    #[arg(long, global = true, default_value_t = 1.0)]
    warmup: f64,
    /// Append the result as one JSON line to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Server process id, for RSS readings (conns).
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// Worker threads of the generator (it shares the machine with the server).
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    /// Exit non-zero when the run counted any error (for smoke tests).
    #[arg(long, global = true)]
    strict: bool,
    /// Print no table header.
    #[arg(long, global = true)]
    no_header: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Keep-alive HTTP clients looping create → get → delete.
    Api {
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Total requests per second (0 = closed loop, as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long, default_value = "pub-sub")]
        pattern: String,
    },
    /// Clients in a closed loop on one echo channel.
    Echo {
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Message size in bytes (at least 39: the header with seq and timestamp).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Total messages per second (0 = closed loop).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
    /// P publishers → S subscribers on one pub-sub channel.
    Pubsub {
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        #[arg(long, default_value_t = 10)]
        subscribers: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Messages per second per publisher (0 = max, limited by --window).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Messages in flight per publisher and subscriber.
        #[arg(long, default_value_t = 64)]
        window: u64,
        /// Connect every client to the node the create response's `url` names (the channel's
        /// owner when the nodes run with WRS_CONNECT_TO_OWNER=true), not round robin over the
        /// --url nodes; the channel is still created through the first --url.
        #[arg(long)]
        affine: bool,
        /// Publishers on the first --url, subscribers round robin over the others: every
        /// delivery crosses nodes (the cross-node max rate with several --url).
        #[arg(long, conflicts_with = "affine")]
        cross: bool,
    },
    /// N publishers over HTTP (`POST /channels/{id}/messages`) → S WebSocket subscribers on
    /// one pub-sub channel: deliveries/s at the subscribers, requests/s at the publishers.
    Post {
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        #[arg(long, default_value_t = 10)]
        subscribers: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Requests per second per publisher (0 = closed loop: the next after the answer).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
    /// One producer → W workers on a push-pull channel.
    Pushpull {
        #[arg(long, default_value_t = 10)]
        workers: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Messages per second (0 = max, limited by --window).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long, default_value_t = 256)]
        window: u64,
    },
    /// One producer's requests → W workers' replies on a fan-in-out channel.
    #[command(name = "fanout", alias = "fan-in-out")]
    Fanout {
        #[arg(long, default_value_t = 10)]
        workers: usize,
        #[arg(long, default_value_t = 96)]
        size: usize,
        /// Requests per second (0 = max, limited by --window).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long, default_value_t = 64)]
        window: u64,
    },
    /// Open N idle connections in steps, hold them, report the server's RSS per connection.
    Conns {
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        #[arg(long, default_value_t = 1_000)]
        step: usize,
        /// Seconds to hold all connections before the final reading.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Number of 127.0.0.x source addresses to spread the connections over.
        #[arg(long, default_value_t = 50)]
        src_ips: u32,
    },
    /// The thesis' table-12 plans (api, ws, mixed, readonly) against the nodes given by --url.
    Cluster {
        /// api | ws | mixed | readonly | all
        #[arg(long, default_value = "all")]
        plan: String,
        /// Clients (default per plan: 500, 200, 50, 500).
        #[arg(long)]
        clients: Option<usize>,
        /// api/readonly: total requests per second (0 = closed loop); ws: messages per second
        /// per client (default 10).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Write the Markdown report with SVG plots from JSON-lines result files.
    Report {
        /// Result files written with --json.
        #[arg(long, required = true)]
        results: Vec<PathBuf>,
        /// Run description (JSON: machine, commands, ...) written by scripts/bench.sh.
        #[arg(long)]
        meta: Option<PathBuf>,
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: PathBuf,
        /// Folder for the SVG plots (linked relative to the report).
        #[arg(long, default_value = "docs/bench")]
        plots: PathBuf,
    },
    /// Print the median of one field over the runs in a result file (for scripts).
    Median {
        #[arg(long, required = true)]
        results: Vec<PathBuf>,
        #[arg(long)]
        scenario: String,
        #[arg(long)]
        key: String,
        #[arg(long, default_value = "wrs")]
        server: String,
        /// rate | p50 | p99 | max | errors | an `extra` field
        #[arg(long, default_value = "rate")]
        field: String,
    },
}

/// What every scenario gets.
pub struct Common {
    pub nodes: Vec<Node>,
    pub label: String,
    pub duration: Duration,
    pub warmup: Duration,
    pub pid: Option<u32>,
}

impl Common {
    /// The node for the i-th client (round robin).
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i % self.nodes.len()]
    }
}

fn main() {
    let cli = Cli::parse();
    let a = cli.common.clone();
    match &cli.cmd {
        Cmd::Report {
            results,
            meta,
            out,
            plots,
        } => {
            if let Err(e) = report::write(results, meta.as_deref(), out, plots) {
                eprintln!("wrs-bench report: {e}");
                std::process::exit(1);
            }
            return;
        }
        Cmd::Median {
            results,
            scenario,
            key,
            server,
            field,
        } => match report::median_of(results, scenario, key, server, field) {
            Ok(v) => {
                println!("{v}");
                return;
            }
            Err(e) => {
                eprintln!("wrs-bench median: {e}");
                std::process::exit(1);
            }
        },
        _ => {}
    }
    let nodes: Vec<Node> = match a.urls.iter().map(|u| Node::parse(u)).collect() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("wrs-bench: {e}");
            std::process::exit(2);
        }
    };
    let c = Common {
        nodes,
        label: a.label.clone(),
        duration: Duration::from_secs_f64(a.duration.max(0.1)),
        warmup: Duration::from_secs_f64(a.warmup.max(0.0)),
        pid: a.pid,
    };
    common::now_ns();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cpu0 = common::CpuSample::take(a.pid);
    let mut results: Vec<AnyResult<Outcome>> = rt.block_on(async {
        match cli.cmd {
            Cmd::Api {
                clients,
                rate,
                ref pattern,
            } => vec![api::run(&c, clients, rate, pattern).await],
            Cmd::Echo {
                clients,
                size,
                rate,
            } => vec![echo::run(&c, clients, size, rate).await],
            Cmd::Pubsub {
                publishers,
                subscribers,
                size,
                rate,
                window,
                affine,
                cross,
            } => {
                let args = relay::RelayArgs {
                    publishers,
                    receivers: subscribers,
                    size,
                    rate,
                    window,
                    affine,
                    cross,
                };
                vec![relay::run(&c, relay::Mode::PubSub, args).await]
            }
            Cmd::Post {
                publishers,
                subscribers,
                size,
                rate,
            } => {
                let args = post::PostArgs {
                    publishers,
                    subscribers,
                    size,
                    rate,
                };
                vec![post::run(&c, args).await]
            }
            Cmd::Pushpull {
                workers,
                size,
                rate,
                window,
            } => {
                let args = relay::RelayArgs {
                    publishers: 1,
                    receivers: workers,
                    size,
                    rate,
                    window,
                    affine: false,
                    cross: false,
                };
                vec![relay::run(&c, relay::Mode::PushPull, args).await]
            }
            Cmd::Fanout {
                workers,
                size,
                rate,
                window,
            } => vec![fanout::run(&c, workers, size, rate, window).await],
            Cmd::Conns {
                conns,
                step,
                hold,
                concurrency,
                src_ips,
            } => {
                let args = conns::ConnsArgs {
                    conns,
                    step,
                    hold: Duration::from_secs_f64(hold),
                    concurrency,
                    src_ips,
                };
                vec![conns::run(&c, args).await]
            }
            Cmd::Cluster {
                ref plan,
                clients,
                rate,
                size,
            } => {
                let plans: Vec<&str> = if plan == "all" {
                    cluster::PLANS.to_vec()
                } else {
                    vec![plan.as_str()]
                };
                let mut v = Vec::new();
                for p in plans {
                    let n = clients.unwrap_or_else(|| cluster::default_clients(p));
                    v.push(cluster::run(&c, p, n, rate, size).await);
                }
                v
            }
            Cmd::Report { .. } | Cmd::Median { .. } => unreachable!(),
        }
    });
    // CPU shares over the whole run (connects and drain included): other processes' share is
    // the noise indicator of a shared machine.
    if let Some((busy, me, server, other)) = common::CpuSample::take(a.pid).since(&cpu0) {
        for o in results.iter_mut().flatten() {
            let round = |v: f64| (v * 10.0).round() / 10.0;
            o.extra("cpu_busy_pct", round(busy));
            o.extra("cpu_generator_pct", round(me));
            if a.pid.is_some() {
                o.extra("cpu_server_pct", round(server));
                o.extra("cpu_other_pct", round(other));
            }
        }
    }
    // Background tasks (drains, held sockets) end with the runtime.
    rt.shutdown_timeout(Duration::from_millis(500));
    if !a.no_header {
        println!("{}", table_header());
    }
    let mut failed = false;
    for r in results {
        match r {
            Ok(o) => {
                println!("{}", table_row(&o));
                for s in &o.error_samples {
                    println!("    error: {s}");
                }
                if let Some(path) = &a.json {
                    let line = serde_json::to_string(&o).expect("json");
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path);
                    match file.and_then(|mut f| writeln!(f, "{line}")) {
                        Ok(()) => {}
                        Err(e) => {
                            eprintln!("wrs-bench: cannot write {}: {e}", path.display());
                            failed = true;
                        }
                    }
                } else {
                    println!("{}", serde_json::to_string(&o).expect("json"));
                }
                if a.strict && o.errors > 0 {
                    failed = true;
                }
            }
            Err(e) => {
                eprintln!("wrs-bench: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
