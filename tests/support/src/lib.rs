//! Shared harness for the wrs integration tests, one concern per module: `process` (the
//! `wrs` binary on free ports), `http` (REST), `ws` (WebSocket clients), `raw_ws` (hostile
//! sockets), `tls` (certificates), `cluster` (several nodes). Tests `use wrs_test_support::*`.

pub mod cluster;
pub mod http;
pub mod process;
pub mod raw_ws;
pub mod tls;
pub mod ws;

pub use cluster::*;
pub use http::*;
pub use process::*;
pub use raw_ws::*;
pub use tls::*;
pub use ws::*;

use std::path::PathBuf;
use std::time::Duration;

/// Generous default for waiting on something the server should do "right away".
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a negative check ("nothing arrives") listens.
pub const QUIET: Duration = Duration::from_millis(400);
/// Largest frame/message our clients accept.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A port that was free a moment ago (bind to :0 and drop).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// The `wrs` binary under test: `WRS_BIN` if set, else the one cargo built next to the test
/// binary (`target/<profile>/wrs`; test binaries live in `target/<profile>/deps`).
pub fn wrs_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WRS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    profile_dir.join("wrs")
}
