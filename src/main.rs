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
    wrs::server::exit_on_panic();
    let run = wrs::run(Arc::new(config), wait_for_signal());
    if let Err(e) = actix_rt::System::new().block_on(run) {
        log::error!("{e}");
        std::process::exit(1);
    }
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
