//! The `wrs` binary: read the configuration, start logging, run the node until SIGTERM or
//! SIGINT (`wrs::run`). Everything else lives in the library (see `lib.rs`).

use std::sync::Arc;

use wrs::config::Config;

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
    exit_on_panic();
    let run = wrs::run(Arc::new(config), wait_for_signal());
    if let Err(e) = actix_rt::System::new().block_on(run) {
        log::error!("{e}");
        std::process::exit(1);
    }
}

/// A panic anywhere (an actor, a worker, the Raft node) ends the process with exit code 70,
/// so Docker or Kubernetes restarts it: a node that lost an actor must not live on half-dead
/// with `/healthz` still saying ok.
fn exit_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        log::error!("fatal: thread {name} panicked: {info}; exiting so the node is restarted");
        std::process::exit(70);
    }));
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
