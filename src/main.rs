//! wrs — the WebSocket Relay Service. `main` only wires the configuration to the three parts:
//! the channel actors (`actors`), the HTTP/WebSocket API (`api`) and the cluster (`cluster`).

mod actors;
mod api;
mod cluster;
mod config;
mod error;
mod metrics;
mod token;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Arbiter};
use actix_web::web;

use crate::actors::registry::{Registry, Shutdown};
use crate::api::AppState;
use crate::config::Config;

fn main() {
    let config = match Config::from_env_and_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wrs: invalid configuration: {e}");
            std::process::exit(2);
        }
    };
    let level = if config.debug { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    if let Err(e) = actix_rt::System::new().block_on(run(Arc::new(config))) {
        log::error!("{e}");
        std::process::exit(1);
    }
}

async fn run(config: Arc<Config>) -> Result<(), String> {
    // Channel actors live on their own arbiters, away from the HTTP workers' threads.
    let arbiters: Vec<Arbiter> = (0..config.workers.clamp(1, 8))
        .map(|_| Arbiter::new())
        .collect();
    let registry = Registry::new(
        arbiters.iter().map(Arbiter::handle).collect(),
        config.max_channels,
        config.id_length,
        config.token_length,
    )
    .start();
    metrics::init_standalone();
    let node = cluster::NodeInfo::new(&config.domain, config.public_api_port);
    let state = web::Data::new(AppState::new(Arc::clone(&config), registry.clone(), node));
    let shutting_down = Arc::clone(&state.shutting_down);
    let server = api::serve(state)?;
    let handle = server.handle();
    log::info!(
        "wrs listening on {}://{}:{} — open {}://{}:{}/client in a browser",
        config.http_scheme(),
        config.bind,
        config.api_port,
        config.http_scheme(),
        if config.bind == "0.0.0.0" {
            "127.0.0.1"
        } else {
            &config.bind
        },
        config.api_port
    );
    if !config.join.is_empty() {
        log::warn!("WRS_JOIN is set, but this build runs standalone; the node serves alone");
    }
    if config.auth {
        log::info!("API auth is on ({} rules)", config.auth_rules.len());
    }

    let stop = async move {
        wait_for_signal().await;
        log::info!("shutting down: closing clients with 1001");
        shutting_down.store(true, Ordering::Relaxed);
        let closed = registry.send(Shutdown).await.unwrap_or(0);
        log::info!("closed {closed} channels");
        // Give the writers a moment to put the close frames on the wire.
        tokio::time::sleep(Duration::from_millis(200)).await;
        handle.stop(true).await;
    };
    let server_task = actix_rt::spawn(server);
    let timeout = config.shutdown_timeout + Duration::from_secs(1);
    stop.await;
    if tokio::time::timeout(timeout, server_task).await.is_err() {
        log::warn!("server did not stop within {timeout:?}; exiting anyway");
    }
    for arbiter in arbiters {
        arbiter.stop();
    }
    log::info!("bye");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot install signal handlers; SIGTERM will kill without cleanup");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
