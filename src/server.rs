//! Wires the parts into one running node: the registry and its channel arbiters, the Raft
//! node and its relay, the peer port, the public API, discovery, and the orderly shutdown.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Arbiter};
use actix_web::web;

use crate::actors::history::Limits;
use crate::actors::registry::{Registry, SetCluster, Shutdown};
use crate::api::{self, AppState};
use crate::cluster::{
    self,
    core::CoreSettings,
    node::{Boot, GetView, RaftNode, RaftSettings},
    storage::disk::Disk,
};
use crate::config::Config;
use crate::metrics;
use crate::model::Member;

/// Runs one node until `stop` resolves (main passes SIGTERM/SIGINT; a test can pass any
/// future), then leaves the cluster, closes clients with `1001` and returns.
pub async fn run(config: Arc<Config>, stop: impl Future<Output = ()>) -> Result<(), String> {
    // Channel actors live on their own arbiters, away from the HTTP workers' threads.
    let arbiters: Vec<Arbiter> = (0..config.workers.clamp(1, 8))
        .map(|_| Arbiter::new())
        .collect();
    // With WRS_DATA_DIR a restarted node is the member it was: same id, same state.
    let boot = match &config.data_dir {
        None => Boot {
            disk: None,
            restored: None,
        },
        Some(dir) => {
            let (disk, restored) = Disk::open(dir).map_err(|e| e.to_string())?;
            Boot {
                disk: Some(Arc::new(disk)),
                restored,
            }
        }
    };
    let restarted = boot.is_member();
    let me = Member {
        id: boot
            .restored
            .as_ref()
            .map_or_else(cluster::random_node_id, |r| r.node),
        api: format!("{}:{}", config.domain, config.public_api_port),
        peer: format!("{}:{}", config.domain, config.node_port),
    };
    metrics::init();
    // Raft ticks and peer links get threads of their own, so channel traffic cannot delay
    // heartbeats (a late heartbeat costs a leader election).
    let raft_arbiter = Arbiter::new();
    let relay_arbiter = Arbiter::new();
    let relay = cluster::relay::Relay::new(
        me.clone(),
        config.cluster_secret.clone(),
        config.node_down_after,
        relay_arbiter.handle(),
    );
    let registry = Registry::new(
        arbiters.iter().map(Arbiter::handle).collect(),
        me.id,
        Arc::clone(&relay) as Arc<dyn crate::actors::peers::Peers>,
        Limits::new(config.history_bytes, config.history_total_bytes),
    )
    .start();
    let raft = {
        let settings = raft_settings(&config);
        let node = RaftNode::new(
            me.clone(),
            registry.clone(),
            Arc::clone(&relay),
            settings,
            boot,
        )?;
        RaftNode::start_in_arbiter(&raft_arbiter.handle(), move |_| node)
    };
    registry.do_send(SetCluster(raft.clone().recipient()));
    if config.cluster_secret.is_none() {
        log::warn!(
            "WRS_CLUSTER_SECRET is not set: the peer port {} listens on loopback only",
            config.node_port
        );
    }
    let peer_server = cluster::peer::server::serve(
        config.peer_bind(),
        config.node_port,
        raft.clone(),
        registry.clone(),
        (config.cluster_secret.clone(), config.max_message_size),
    )
    .map_err(|e| {
        format!(
            "WRS_NODE_PORT: cannot listen on {}:{}: {e}",
            config.peer_bind(),
            config.node_port
        )
    })?;
    let peer_handle = peer_server.handle();
    actix_rt::spawn(peer_server);

    let state = web::Data::new(AppState::new(
        Arc::clone(&config),
        registry.clone(),
        raft.clone(),
        relay,
    ));
    let shutting_down = Arc::clone(&state.shutting_down);
    let server = api::serve(state)?;
    let handle = server.handle();
    log::info!(
        "wrs node {} listening on {}://{}:{} (peers on port {}) — open {}://{}:{}/client in a browser",
        me.id,
        config.http_scheme(),
        config.bind,
        config.api_port,
        config.node_port,
        config.http_scheme(),
        if config.bind == "0.0.0.0" { "127.0.0.1" } else { &config.bind },
        config.api_port
    );
    if config.auth {
        log::info!("API auth is on ({} rules)", config.auth_rules.len());
    }
    let own: BTreeSet<String> = cluster::membership::resolve(std::slice::from_ref(&me.api))
        .into_iter()
        .chain([me.api.clone()])
        .collect();
    let delay = startup_delay(config.max_startup_delay);
    if !delay.is_zero() {
        log::info!(
            "startup delay: waiting {} ms (of at most WRS_MAX_STARTUP_DELAY={} ms) before discovery",
            delay.as_millis(),
            config.max_startup_delay.as_millis()
        );
    }
    let discovery = cluster::membership::Discovery {
        join: config.join.clone(),
        access: cluster::membership::ApiAccess {
            scheme: config.http_scheme().to_owned(),
            token: config.auth.then(|| config.auth_token.clone()),
            secret: config.cluster_secret.clone(),
        },
        own_addrs: own,
        data_dir: config.data_dir.as_ref().map(|d| d.display().to_string()),
    };
    let (node, me_at_start, down_after) = (raft.clone(), me.clone(), config.node_down_after);
    let leaving = Arc::clone(&shutting_down);
    // A discovery that must stop the node (a data directory of another cluster).
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<String>();
    actix_rt::spawn(async move {
        let mut discovery = discovery;
        if restarted {
            // A member restarted on its data directory knows its cluster: it talks to its
            // peers at once, and only `watch` may find that it was removed meanwhile.
            log::info!(
                "cluster: restarted as member {}; not looking for a cluster",
                me_at_start.id
            );
            let mine = node.send(GetView).await.map_or(0, |v| v.cluster);
            if let Err(e) = cluster::membership::check_own_cluster(&discovery, mine).await {
                let _ = fatal_tx.send(e);
                return;
            }
        } else {
            tokio::time::sleep(delay).await;
            discovery.own_addrs =
                cluster::membership::discover(&discovery, me_at_start, &node, true).await;
        }
        if let Err(e) = cluster::membership::watch(discovery, node, down_after, leaving).await {
            let _ = fatal_tx.send(e);
        }
    });

    let durable = config.data_dir.is_some();
    let stop = async move {
        stop.await;
        log::info!("shutting down: leaving the cluster, closing clients with 1001");
        shutting_down.store(true, Ordering::Relaxed);
        if durable {
            // It comes back as the same member: leaving would make it a stranger.
            log::info!("cluster: staying a member (WRS_DATA_DIR is set; this node comes back)");
        } else {
            cluster::membership::leave(&raft, Duration::from_secs(3)).await;
        }
        let closed = registry.send(Shutdown).await.unwrap_or(0);
        log::info!("closed {closed} channels");
        // Give the writers a moment to put the close frames on the wire.
        tokio::time::sleep(Duration::from_millis(200)).await;
        peer_handle.stop(false).await;
        handle.stop(true).await;
    };
    let server_task = actix_rt::spawn(server);
    let fatal = async {
        match fatal_rx.await {
            Ok(e) => e,
            // Discovery ended without a verdict: nothing to stop for.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = stop => {}
        e = fatal => return Err(e),
    }
    let timeout = config.shutdown_timeout + Duration::from_secs(1);
    if tokio::time::timeout(timeout, server_task).await.is_err() {
        log::warn!("server did not stop within {timeout:?}; exiting anyway");
    }
    for arbiter in arbiters.into_iter().chain([raft_arbiter, relay_arbiter]) {
        arbiter.stop();
    }
    log::info!("bye");
    Ok(())
}

/// A uniformly random wait in `0..=max`, so nodes of a cluster started at the same moment do
/// not all look for each other at once (the thesis' `WRS_MAX_STARTUP_DELAY`).
fn startup_delay(max: Duration) -> Duration {
    let max_ms = max.as_millis() as u64;
    Duration::from_millis(crate::token::random_up_to(max_ms))
}

/// A panic anywhere (an actor, a worker, the Raft node) ends the process with exit code 70,
/// so Docker or Kubernetes restarts it: a node that lost an actor must not live on half-dead
/// with `/healthz` still saying ok.
pub fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic".into());
        let at = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        // One line, so a log pipeline keeps the reason with the event.
        let what = what.replace('\n', " ");
        log::error!(
            "fatal: thread {name} panicked{at}: {what}; exiting (70) so the node is restarted"
        );
        std::process::exit(70);
    }));
}

fn raft_settings(config: &Config) -> RaftSettings {
    let tick = Duration::from_millis(100);
    let ticks = |d: Duration| ((d.as_millis() / tick.as_millis()) as usize).max(1);
    let heartbeat_ticks = ticks(config.node_heartbeat);
    let min_election_ticks = ticks(config.node_min_election_timeout).max(heartbeat_ticks + 1);
    RaftSettings {
        tick,
        core: CoreSettings {
            heartbeat_ticks,
            min_election_ticks,
            max_election_ticks: ticks(config.node_max_election_timeout).max(min_election_ticks + 1),
            snapshot_length: config.node_snapshot_length,
            max_channels: config.max_channels,
            down_after_ticks: ticks(config.node_down_after) as u64,
            remove_after_ticks: config.node_remove_after.map(|d| ticks(d) as u64),
        },
        propose_timeout: Duration::from_secs(5),
        cluster_secret: config.cluster_secret.clone(),
        down_after: config.node_down_after,
    }
}
