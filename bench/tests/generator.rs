//! Drives the baseline relay with the real generator for a fraction of a second per scenario:
//! checks that every scenario the baseline supports runs without errors and writes its JSON,
//! and that the report is written from those results. (wrs itself is driven by
//! `scripts/bench.sh --smoke`.)
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_baseline() -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_baseline-relay"))
        .env("BASELINE_PORT", port.to_string())
        .env("BASELINE_BIND", "127.0.0.1")
        .stderr(Stdio::null())
        .spawn()
        .expect("start baseline-relay");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "baseline did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (Server(child), port)
}

fn bench(port: u16, json: &std::path::Path, pid: u32, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_wrs-bench"))
        .args([
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--label",
            "baseline",
        ])
        .args([
            "--duration",
            "0.3",
            "--warmup",
            "0.1",
            "--strict",
            "--threads",
            "1",
        ])
        .args(["--pid", &pid.to_string(), "--json", json.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run wrs-bench");
    assert!(
        out.status.success(),
        "wrs-bench {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scenarios_run_against_the_baseline_and_the_report_is_written() {
    let (server, port) = start_baseline();
    let pid = server.0.id();
    let dir = tempfile_dir();
    let json = dir.join("results.jsonl");
    bench(port, &json, pid, &["echo", "--clients", "4"]);
    bench(port, &json, pid, &["pubsub", "--subscribers", "5"]);
    bench(
        port,
        &json,
        pid,
        &[
            "pubsub",
            "--publishers",
            "2",
            "--subscribers",
            "3",
            "--rate",
            "200",
        ],
    );
    bench(port, &json, pid, &["api", "--clients", "2"]);
    bench(
        port,
        &json,
        pid,
        &["conns", "--conns", "50", "--step", "25", "--hold", "0.1"],
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for l in &lines {
        assert_eq!(l["errors"], 0, "{l}");
    }
    assert!(lines[1]["rate"].as_f64().unwrap() > 0.0);
    assert_eq!(lines[1]["extra"]["lost"], 0);
    assert_eq!(lines[4]["extra"]["ok"], 50);

    let out = dir.join("benchmarks.md");
    let status = Command::new(env!("CARGO_BIN_EXE_wrs-bench"))
        .args(["report", "--results", json.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .args(["--plots", dir.join("bench").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let md = std::fs::read_to_string(&out).unwrap();
    assert!(md.contains("## Targets"), "{md}");
    assert!(dir.join("bench/rss_vs_connections.svg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wrs-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
