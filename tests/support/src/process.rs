//! The `wrs` process: start it on free ports with an environment, read its log, signal,
//! kill, wait for it; a run that must stop at start (`run_with_env`).

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::*;

/// A running `wrs` process; killed on drop (its log is printed when the test panicked).
pub struct Server {
    pub(crate) child: Option<Child>,
    pub api_port: u16,
    pub node_port: u16,
    pub tls: bool,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) client: awc::Client,
}

/// Environment every test server gets unless the test overrides it.
pub(crate) fn base_env(api_port: u16, node_port: u16) -> Vec<(String, String)> {
    vec![
        ("WRS_BIND".into(), "127.0.0.1".into()),
        ("WRS_API_PORT".into(), api_port.to_string()),
        ("WRS_NODE_PORT".into(), node_port.to_string()),
        ("WRS_DOMAIN".into(), "127.0.0.1".into()),
        ("RUST_LOG".into(), "info".into()),
    ]
}

/// Spawn the binary with `envs` (after the base env) and stdout/stderr into files in `dir`.
pub fn spawn_wrs(dir: &Path, envs: &[(String, String)]) -> Child {
    let out = File::create(dir.join("stdout.log")).expect("create stdout.log");
    let err = File::create(dir.join("stderr.log")).expect("create stderr.log");
    let mut cmd = Command::new(wrs_bin());
    // Do not leak the developer's configuration into the test server.
    for (k, _) in std::env::vars() {
        if k.starts_with("WRS_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    cmd.spawn().expect("spawn the wrs binary")
}

impl Server {
    /// Spawn the binary on the given ports with `envs` (after the base env) and return at once,
    /// without waiting for `/healthz` (see [`Server::wait_up`]).
    pub fn spawn_on(api_port: u16, node_port: u16, envs: &[(String, String)]) -> Server {
        let mut all = base_env(api_port, node_port);
        for (k, v) in envs {
            all.retain(|(ek, _)| ek != k);
            all.push((k.clone(), v.clone()));
        }
        let tls = envs.iter().any(|(k, v)| k == "WRS_SSL" && v == "true");
        let dir = tempfile::tempdir().expect("tempdir");
        let child = spawn_wrs(dir.path(), &all);
        Server {
            child: Some(child),
            api_port,
            node_port,
            tls,
            dir,
            client: http_client(tls),
        }
    }

    /// Start a server with extra environment variables and wait until `/healthz` is 200.
    pub async fn start(envs: &[(&str, &str)]) -> Server {
        let mut last_log = String::new();
        for _attempt in 0..4 {
            let api_port = free_port();
            let mut node_port = free_port();
            while node_port == api_port {
                node_port = free_port();
            }
            let owned: Vec<(String, String)> = envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let mut server = Server::spawn_on(api_port, node_port, &owned);
            match server.wait_healthy(Duration::from_secs(20)).await {
                Ok(()) => return server,
                Err(e) => {
                    last_log = format!("{e}\n{}", server.logs());
                    // A port taken between our probe and the server's bind: try new ports.
                    if port_taken(&last_log) {
                        continue;
                    }
                    break;
                }
            }
        }
        // Don't print the log twice through Drop.
        panic!("wrs did not become healthy:\n{last_log}");
    }

    pub(crate) async fn wait_healthy(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let url = self.url("/healthz");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let _ = self.child.take();
                    return Err(format!("wrs exited before it was healthy: {status}"));
                }
            }
            if let Ok(Ok(res)) =
                tokio::time::timeout(Duration::from_secs(2), self.client.get(&url).send()).await
            {
                if res.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("GET /healthz was not 200 within {limit:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server process").id()
    }

    /// stdout + stderr of the server so far.
    pub fn logs(&self) -> String {
        let out = std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        format!("--- wrs stdout ---\n{out}\n--- wrs stderr ---\n{err}")
    }

    /// Send SIGTERM to the server process.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Wait (polling) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut().expect("server process");
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.api_port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn ws_url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}{path}", self.api_port)
    }

    pub fn client(&self) -> &awc::Client {
        &self.client
    }
}

/// Whether a server log says a port could not be bound.
pub(crate) fn port_taken(log: &str) -> bool {
    let lower = log.to_lowercase();
    lower.contains("in use") || lower.contains("addrinuse")
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: String = if logs.len() > 8000 {
                let mut start = logs.len() - 8000;
                while !logs.is_char_boundary(start) {
                    start += 1;
                }
                logs[start..].to_string()
            } else {
                logs
            };
            eprintln!("{tail}");
        }
    }
}

/// How a run that was expected to stop at start ended.
pub struct Exit {
    pub code: Option<i32>,
    pub stderr: String,
    pub stdout: String,
}

/// Run the binary with `envs` on fresh ports; it must exit within 10 s.
pub async fn run_with_env(envs: &[(&str, &str)]) -> Exit {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all: Vec<(String, String)> = vec![
        ("WRS_BIND".into(), "127.0.0.1".into()),
        ("WRS_API_PORT".into(), free_port().to_string()),
        ("WRS_NODE_PORT".into(), free_port().to_string()),
    ];
    for (k, v) in envs {
        all.retain(|(ek, _)| ek != k);
        all.push((k.to_string(), v.to_string()));
    }
    let mut child = spawn_wrs(dir.path(), &all);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    let stdout = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap_or_default();
    match status {
        None => {
            panic!("wrs with {envs:?} did not exit within 10 s\nstdout: {stdout}\nstderr: {stderr}")
        }
        Some(st) => Exit {
            code: st.code(),
            stderr,
            stdout,
        },
    }
}

pub fn assert_config_error(out: &Exit, var: &str) {
    assert!(
        out.code.is_some_and(|c| c != 0),
        "exit code {:?} for bad {var}; stderr: {}",
        out.code,
        out.stderr
    );
    assert!(
        out.stderr.contains(var),
        "stderr does not name {var}:\nstderr: {}\nstdout: {}",
        out.stderr,
        out.stdout
    );
}
