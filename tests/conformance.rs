//! Real peers: the Autobahn fuzzing client and the /client page in headless Chromium.
//! Both fail when their tools are missing, unless WRS_SKIP_EXTERNAL=1.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::json;
use wrs_test_support::*;

const SKIPPED: i32 = 77;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tools() -> PathBuf {
    std::env::var_os("WRS_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/test-tools"))
}

fn skip_external() -> bool {
    std::env::var("WRS_SKIP_EXTERNAL").is_ok_and(|v| v == "1")
}

/// Run a script (blocking, in a helper thread so the server keeps being polled) and judge its
/// exit code: 0 pass, 77 tool missing (fail unless WRS_SKIP_EXTERNAL=1), else fail.
async fn run_script(name: &str, mut cmd: Command) -> Option<String> {
    cmd.stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{name}: cannot run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{name} stdout:\n{stdout}\n{name} stderr:\n{stderr}");
    match out.status.code() {
        Some(0) => Some(stdout),
        Some(SKIPPED) if skip_external() => {
            eprintln!("SKIPPED {name}: tool not installed and WRS_SKIP_EXTERNAL=1");
            None
        }
        Some(SKIPPED) => panic!(
            "{name}: the external tool is not installed; run scripts/install-test-tools.sh \
             (or set WRS_SKIP_EXTERNAL=1 to skip)"
        ),
        other => panic!("{name} failed with exit code {other:?}"),
    }
}

#[actix_rt::test]
async fn autobahn_fuzzingclient_cases_1_to_10_pass() {
    if skip_external()
        && !tools().join("ab-py27/bin/wstest").exists()
        && !tools().join("kosoku/bin/kosoku").exists()
    {
        eprintln!("SKIPPED autobahn: not installed and WRS_SKIP_EXTERNAL=1");
        return;
    }
    let s = Server::start(&[
        ("WRS_MAX_MESSAGE_SIZE", "16777216"),
        ("WRS_PING_INTERVAL", "600000"),
        ("WRS_PING_TIMEOUT", "1200000"),
        ("RUST_LOG", "warn"),
    ])
    .await;
    let c = s.create(json!({"pattern": "echo", "timeout": -1})).await;
    let url = s.ws_url(&c.connect_path());
    // Kept after the run (target/ is ignored by git) for reading the per-case reports.
    let out = root().join("target/test-reports/autobahn");
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("tests/external/autobahn.sh"))
        .arg(&url)
        .arg(&out)
        .env("WRS_TEST_TOOLS", tools());
    if run_script("autobahn", cmd).await.is_none() {
        return;
    }
    // The server survived the fuzzing and still relays.
    let mut ws = s.connect(&c.id, &c.token).await;
    ws.send_text("after autobahn").await;
    assert_eq!(ws.recv_text().await, "after autobahn");
}

/// The selenium venv, or None when it (or Chromium) is missing and WRS_SKIP_EXTERNAL=1.
fn browser_python(name: &str) -> Option<PathBuf> {
    let python = tools().join("selenium/bin/python");
    let installed = python.exists()
        && std::path::Path::new("/usr/bin/chromium").exists()
        && std::path::Path::new("/usr/bin/chromedriver").exists();
    if installed {
        return Some(python);
    }
    if skip_external() {
        eprintln!("SKIPPED {name}: tools not installed and WRS_SKIP_EXTERNAL=1");
        return None;
    }
    panic!(
        "selenium venv ({}) or chromium/chromedriver missing; run scripts/install-test-tools.sh \
         (or set WRS_SKIP_EXTERNAL=1 to skip)",
        python.display()
    );
}

/// Runs `tests/external/<script>` with the selenium venv; reports go to
/// target/test-reports/<report> (success.png / failure.png are kept after the run).
async fn browser_script(script: &str, report: &str, args: &[String]) -> Option<String> {
    let python = browser_python(report)?;
    let out = root().join("target/test-reports").join(report);
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new(&python);
    cmd.arg(root().join("tests/external").join(script))
        .args(args)
        .arg(&out);
    run_script(report, cmd).await
}

#[actix_rt::test]
async fn browser_client_page_relays_between_two_clients() {
    let s = Server::start(&[]).await;
    let Some(stdout) = browser_script("browser_client.py", "browser", &[s.base()]).await else {
        return;
    };
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHANNEL_ID="))
        .expect("the script prints CHANNEL_ID=")
        .trim()
        .to_string();
    let ch = s.channel(&id).await;
    assert_eq!(
        ch["pattern"], "pub-sub",
        "the page created a pub-sub channel"
    );
}

#[actix_rt::test]
async fn browser_client_page_helpers_reply_share_snippets_and_binary_by_clicks() {
    let s = Server::start(&[]).await;
    let Some(stdout) =
        browser_script("browser_client_helpers.py", "browser-helpers", &[s.base()]).await
    else {
        return;
    };
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("REQ_REPL_ID="))
        .expect("the script prints REQ_REPL_ID=")
        .trim()
        .to_string();
    let ch = s.channel(&id).await;
    assert_eq!(
        ch["pattern"], "req-repl",
        "the page created a req-repl channel"
    );
}

/// The page of `tests/external/browser_cross_origin.py`, served from another port than wrs,
/// against a server with `envs`; `expect` is `allowed` or `blocked`.
async fn cross_origin(envs: &[(&str, &str)], page_port: u16, expect: &str) -> Option<Server> {
    let s = Server::start(envs).await;
    let report = format!("browser-cross-origin-{expect}");
    let args = [s.base(), page_port.to_string(), expect.to_string()];
    let stdout = browser_script("browser_cross_origin.py", &report, &args).await?;
    assert!(
        stdout.contains(&format!("{expect} as expected")),
        "{stdout}"
    );
    Some(s)
}

#[actix_rt::test]
async fn a_page_on_another_origin_runs_the_thesis_examples_unless_its_origin_is_not_allowed() {
    let page_port = free_port();
    let page_origin = format!("http://127.0.0.1:{page_port}");
    // Default `*`, then the page's own origin listed: fetch + url + echo, and figures 39-41.
    if cross_origin(&[], page_port, "allowed").await.is_none() {
        return;
    }
    cross_origin(&[("WRS_CORS_ORIGINS", &page_origin)], page_port, "allowed").await;
    // Another origin listed: the browser blocks the page, and no channel was created (the
    // refused preflight stopped the POST before it was sent).
    let s = cross_origin(
        &[("WRS_CORS_ORIGINS", "http://other.example")],
        page_port,
        "blocked",
    )
    .await
    .expect("tools were found above");
    assert_eq!(s.get("/channels").await.json()["data"], json!([]));
}
