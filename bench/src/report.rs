//! `wrs-bench report`: medians over runs, ratios to the baseline, the issue's targets, and SVG
//! plots (plotters, SVG backend only), written as docs/benchmarks.md.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::common::{median, AnyResult, Outcome};

pub fn load(files: &[PathBuf]) -> AnyResult<Vec<Outcome>> {
    let mut v = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            v.push(
                serde_json::from_str(line)
                    .map_err(|e| format!("{}:{}: {e}", f.display(), i + 1))?,
            );
        }
    }
    Ok(v)
}

pub fn field(o: &Outcome, name: &str) -> Option<f64> {
    match name {
        "rate" => Some(o.rate),
        "p50" => Some(o.lat.p50_ms),
        "p90" => Some(o.lat.p90_ms),
        "p99" => Some(o.lat.p99_ms),
        "p999" => Some(o.lat.p999_ms),
        "max" => Some(o.lat.max_ms),
        "mean" => Some(o.lat.mean_ms),
        "min" => Some(o.lat.min_ms),
        "errors" => Some(o.errors as f64),
        other => o
            .extra
            .get(other)
            .or_else(|| o.params.get(other))
            .and_then(|v| v.as_f64()),
    }
}

pub fn median_of(
    files: &[PathBuf],
    scenario: &str,
    key: &str,
    server: &str,
    name: &str,
) -> AnyResult<f64> {
    let all = load(files)?;
    let runs = Runs::new(&all);
    runs.med(scenario, key, server, name)
        .ok_or_else(|| format!("no runs of {scenario} {key} on {server} with {name}"))
}

/// Runs grouped by (scenario, key, server).
struct Runs<'a> {
    groups: BTreeMap<(String, String, String), Vec<&'a Outcome>>,
}

impl<'a> Runs<'a> {
    fn new(all: &'a [Outcome]) -> Runs<'a> {
        let mut groups: BTreeMap<_, Vec<&Outcome>> = BTreeMap::new();
        for o in all {
            groups
                .entry((o.scenario.clone(), o.key.clone(), o.label.clone()))
                .or_default()
                .push(o);
        }
        Runs { groups }
    }
    fn get(&self, s: &str, k: &str, l: &str) -> &[&'a Outcome] {
        self.groups
            .get(&(s.into(), k.into(), l.into()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
    fn med(&self, s: &str, k: &str, l: &str, f: &str) -> Option<f64> {
        let mut v: Vec<f64> = self
            .get(s, k, l)
            .iter()
            .filter_map(|o| field(o, f))
            .collect();
        (!v.is_empty()).then(|| median(&mut v))
    }
    fn errors(&self, s: &str, k: &str, l: &str) -> u64 {
        self.get(s, k, l).iter().map(|o| o.errors).sum()
    }
    /// Keys of a scenario in first-seen order of the runs of `label`.
    fn keys(&self, all: &[Outcome], s: &str) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for o in all {
            if o.scenario == s && !keys.contains(&o.key) {
                keys.push(o.key.clone());
            }
        }
        keys
    }
}

/// Median share of the machine's CPU not charged to the generator or the server (wrs / baseline).
fn other_cpu(runs: &Runs, s: &str, k: &str) -> String {
    let f = |l: &str| {
        runs.med(s, k, l, "cpu_other_pct")
            .map_or("–".into(), |v| format!("{v:.0}"))
    };
    format!("{} / {}", f("wrs"), f("baseline"))
}

fn fmt_rate(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => {
            let s = format!("{:.0}", v);
            // thousands separators
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if i > 0 && (s.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            out
        }
        Some(v) => format!("{v:.1}"),
        None => "–".into(),
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
        None => "–".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}×"))
}

struct Target {
    what: String,
    goal: String,
    measured: String,
    met: Option<bool>,
    gap: String,
}

fn target_ge(what: &str, goal: f64, measured: Option<f64>, unit: &str) -> Target {
    let (met, gap) = match measured {
        Some(m) if m >= goal => (Some(true), String::new()),
        Some(m) => (
            Some(false),
            format!(
                "short by {:.1} % ({} {unit})",
                100.0 * (goal - m) / goal,
                fmt_num(goal - m)
            ),
        ),
        None => (None, "not measured".into()),
    };
    Target {
        what: what.into(),
        goal: format!("≥ {} {unit}", fmt_num(goal)),
        measured: measured.map_or("–".into(), |m| format!("{} {unit}", fmt_num(m))),
        met,
        gap,
    }
}

fn target_le(what: &str, goal: f64, measured: Option<f64>, unit: &str, strict: bool) -> Target {
    let (met, gap) = match measured {
        Some(m) if (strict && m < goal) || (!strict && m <= goal) => (Some(true), String::new()),
        Some(m) => (
            Some(false),
            format!(
                "over by {:.1} % ({} {unit})",
                100.0 * (m - goal) / goal,
                fmt_num(m - goal)
            ),
        ),
        None => (None, "not measured".into()),
    };
    Target {
        what: what.into(),
        goal: format!(
            "{} {} {unit}",
            if strict { "<" } else { "≤" },
            fmt_num(goal)
        ),
        measured: measured.map_or("–".into(), |m| format!("{} {unit}", fmt_num(m))),
        met,
        gap,
    }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        fmt_rate(Some(v))
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The fixed-rate run group of `scenario` whose offered rate is nearest `fraction` × `max`.
fn nearest_fixed(
    runs: &Runs,
    all: &[Outcome],
    scenario: &str,
    base_key: &str,
    server: &str,
    offered_of: impl Fn(&Outcome) -> f64,
    target: f64,
) -> Option<String> {
    let mut best: Option<(f64, String)> = None;
    for k in runs.keys(all, scenario) {
        if !k.starts_with(&format!("{base_key}@")) {
            continue;
        }
        let Some(o) = runs.get(scenario, &k, server).first() else {
            continue;
        };
        let d = (offered_of(o) - target).abs();
        if best.as_ref().is_none_or(|(bd, _)| d < *bd) {
            best = Some((d, k));
        }
    }
    best.map(|b| b.1)
}

fn pubsub_offered(o: &Outcome) -> f64 {
    let g = |k: &str| o.params.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
    g("rate_per_publisher") * g("publishers") * g("receivers")
}

fn api_offered(o: &Outcome) -> f64 {
    o.params.get("rate").and_then(|v| v.as_f64()).unwrap_or(0.0)
}

pub fn write(results: &[PathBuf], meta: Option<&Path>, out: &Path, plots: &Path) -> AnyResult<()> {
    let all = load(results)?;
    if all.is_empty() {
        return Err("no results".into());
    }
    let runs = Runs::new(&all);
    std::fs::create_dir_all(plots).map_err(|e| format!("{}: {e}", plots.display()))?;
    let plot_rel = relative(plots, out.parent().unwrap_or(Path::new(".")));
    let (w, b) = ("wrs", "baseline");
    let mut md = String::new();
    let read = |name: &str| {
        meta.and_then(|m| std::fs::read_to_string(m.join(name)).ok())
            .unwrap_or_default()
    };
    let machine = read("machine.txt");
    let commands = read("commands.txt");
    let invocation = read("invocation.txt");

    let _ = writeln!(md, "# wrs benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `{}` — do not edit by hand; rerun the script instead. The load generator \
         is `wrs-bench` (bench/), the reference is `baseline-relay` (bench/src/bin/), a raw \
         tokio-tungstenite relay with no features, started next to wrs and driven by the same \
         generator over real loopback sockets. Every number is the **median of the runs** listed \
         in the *runs* column; ratios are wrs ÷ baseline of those medians.\n",
        invocation.trim().if_empty("scripts/bench.sh")
    );
    if !machine.is_empty() {
        let _ = writeln!(md, "## Machine\n\n```\n{}\n```\n", machine.trim());
    }

    // ---------- targets
    let pub_max = |k: &str, l: &str| runs.med("pubsub", k, l, "rate");
    let mut targets = Vec::new();
    for k in ["1x10", "1x100"] {
        let r = ratio(pub_max(k, w), pub_max(k, b));
        targets.push(target_ge(
            &format!(
                "pub-sub {} (64 B) deliveries/s vs baseline",
                k.replace('x', "→")
            ),
            1.0,
            r,
            "×",
        ));
    }
    let echo_key = if runs.get("echo", "50", w).is_empty() {
        runs.keys(&all, "echo")
            .into_iter()
            .next()
            .unwrap_or_default()
    } else {
        "50".to_string()
    };
    targets.push(target_ge(
        &format!("echo {echo_key} clients msg/s vs baseline"),
        1.0,
        ratio(
            runs.med("echo", &echo_key, w, "rate"),
            runs.med("echo", &echo_key, b, "rate"),
        ),
        "×",
    ));
    for base in ["1x100", "1x10"] {
        let lat_key = pub_max(base, w)
            .and_then(|m| nearest_fixed(&runs, &all, "pubsub", base, w, pubsub_offered, m / 2.0));
        if lat_key.is_none() && base == "1x10" {
            continue;
        }
        let p99 = |l: &str| {
            lat_key
                .as_ref()
                .and_then(|k| runs.med("pubsub", k, l, "p99"))
        };
        let offered = lat_key
            .as_ref()
            .and_then(|k| runs.get("pubsub", k, w).first().map(|o| pubsub_offered(o)));
        let mut t = target_le(
            &format!(
                "pub-sub {} delivery p99 at half the max rate{}",
                base.replace('x', "→"),
                offered
                    .map(|o| format!(" ({} deliveries/s)", fmt_rate(Some(o))))
                    .unwrap_or_default()
            ),
            5.0,
            p99(w),
            "ms",
            true,
        );
        if let Some(bp) = p99(b) {
            let sep = if t.gap.is_empty() { "" } else { "; " };
            t.gap = format!(
                "{}{sep}baseline at the same load: {} ms",
                t.gap,
                fmt_ms(Some(bp))
            );
        }
        targets.push(t);
    }
    let api_key = runs
        .keys(&all, "api")
        .into_iter()
        .find(|k| !k.contains('@'))
        .unwrap_or_default();
    let api_max = runs.med("api", &api_key, w, "rate");
    targets.push(target_ge(
        "API create+get+delete requests/s",
        30_000.0,
        api_max,
        "req/s",
    ));
    let api_half =
        api_max.and_then(|m| nearest_fixed(&runs, &all, "api", &api_key, w, api_offered, m / 2.0));
    targets.push(target_le(
        &format!(
            "API p99 at half the measured rate{}",
            api_half
                .as_ref()
                .and_then(|k| runs.get("api", k, w).first().map(|o| api_offered(o)))
                .map(|o| format!(" ({} req/s)", fmt_rate(Some(o))))
                .unwrap_or_default()
        ),
        10.0,
        api_half.as_ref().and_then(|k| runs.med("api", k, w, "p99")),
        "ms",
        true,
    ));
    let conns_key = runs
        .keys(&all, "conns")
        .into_iter()
        .max_by_key(|k| k.parse::<u64>().unwrap_or(0))
        .unwrap_or_default();
    targets.push(target_ge(
        "idle connections held",
        10_000.0,
        runs.med("conns", &conns_key, w, "ok"),
        "conns",
    ));
    targets.push(target_le(
        "idle RSS per connection",
        4.0,
        runs.med("conns", &conns_key, w, "kib_per_conn"),
        "KiB",
        false,
    ));
    let _ = writeln!(
        md,
        "## Targets\n\nThroughput, API rate and idle memory as issue #12 sets them; the latency \
         goals from issue #4.\n"
    );
    let _ = writeln!(
        md,
        "| target | goal | measured (median) | met | by how much |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for t in &targets {
        let met = match t.met {
            Some(true) => "✅ yes",
            Some(false) => "❌ no",
            None => "–",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            t.what, t.goal, t.measured, met, t.gap
        );
    }
    let _ = writeln!(md);

    // ---------- throughput, wrs vs baseline
    let _ = writeln!(md, "## Throughput: wrs vs the baseline relay\n");
    let _ = writeln!(
        md,
        "Max-rate runs (closed loop, or a bounded in-flight window per publisher). `key` is \
         `publishers x subscribers` for pub-sub, clients for echo and api. Latency columns are \
         wrs / baseline in ms. *errors* adds up every run (lost + duplicated messages, failed \
         requests and connections).\n"
    );
    let _ = writeln!(
        md,
        "| scenario | key | unit | wrs | baseline | ratio | p50 | p99 | max | errors | runs | unattributed CPU % |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in ["pubsub", "echo", "api"] {
        for k in runs.keys(&all, s) {
            if k.contains('@') {
                continue;
            }
            let unit = runs
                .get(s, &k, w)
                .first()
                .or(runs.get(s, &k, b).first())
                .map(|o| o.unit.clone())
                .unwrap_or_default();
            let both = |f: &str| {
                format!(
                    "{} / {}",
                    fmt_ms(runs.med(s, &k, w, f)),
                    fmt_ms(runs.med(s, &k, b, f))
                )
            };
            let _ = writeln!(
                md,
                "| {s} | {k} | {unit} | {} | {} | **{}** | {} | {} | {} | {} / {} | {} / {} | {} |",
                fmt_rate(runs.med(s, &k, w, "rate")),
                fmt_rate(runs.med(s, &k, b, "rate")),
                fmt_ratio(ratio(
                    runs.med(s, &k, w, "rate"),
                    runs.med(s, &k, b, "rate")
                )),
                both("p50"),
                both("p99"),
                both("max"),
                runs.errors(s, &k, w),
                runs.errors(s, &k, b),
                runs.get(s, &k, w).len(),
                runs.get(s, &k, b).len(),
                other_cpu(&runs, s, &k),
            );
        }
    }
    let _ = writeln!(md);

    // deliveries vs subscribers plot
    let mut series = Vec::new();
    for l in [w, b] {
        let mut pts = Vec::new();
        for k in runs.keys(&all, "pubsub") {
            if let Some(subs) = k.strip_prefix("1x").and_then(|s| s.parse::<f64>().ok()) {
                if let Some(r) = runs.med("pubsub", &k, l, "rate") {
                    pts.push((subs, r));
                }
            }
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !pts.is_empty() {
            series.push((l.to_string(), pts));
        }
    }
    if !series.is_empty() {
        let file = "deliveries_vs_subscribers.svg";
        plot(
            &plots.join(file),
            "pub-sub, 1 publisher, 64 B: deliveries/s (median)",
            "subscribers",
            "deliveries/s",
            &series,
            true,
            false,
        )?;
        let _ = writeln!(md, "![deliveries/s vs subscribers]({plot_rel}/{file})\n");
    }

    // ---------- latency vs offered load
    let mut lat_rows = Vec::new();
    for k in runs.keys(&all, "pubsub") {
        if !k.starts_with("1x100@") && !k.starts_with("1x10@") {
            continue;
        }
        let offered = runs
            .get("pubsub", &k, w)
            .first()
            .or(runs.get("pubsub", &k, b).first())
            .map(|o| pubsub_offered(o))
            .unwrap_or(0.0);
        lat_rows.push((offered, k));
    }
    // 1→100 first, then 1→10; each by offered load
    lat_rows.sort_by(|a, b| {
        b.1.starts_with("1x100@")
            .cmp(&a.1.starts_with("1x100@"))
            .then(a.0.total_cmp(&b.0))
    });
    if !lat_rows.is_empty() {
        let max = pub_max("1x100", w);
        let _ = writeln!(
            md,
            "## Delivery latency vs offered load (pub-sub 64 B, fixed rate)\n"
        );
        let _ = writeln!(
            md,
            "The publisher sends on a fixed schedule; a message sent more than 2 ms late carries \
             its scheduled time + 2 ms, so a server that holds the generator back shows that \
             backlog in the latency (no coordinated omission). Offered load is in deliveries/s (publish rate × subscribers); \
             the fraction is of wrs's median max rate for the same shape (1→100: {}).\n",
            fmt_rate(max)
        );
        let _ = writeln!(
            md,
            "| pub→sub | offered deliveries/s | of wrs max | wrs p50 | wrs p99 | wrs max | baseline p50 | baseline p99 | baseline max | wrs achieved | errors wrs / baseline | runs | unattributed CPU % |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for (l, f) in [(w, "p50"), (w, "p99"), (b, "p50"), (b, "p99")] {
            let pts: Vec<(f64, f64)> = lat_rows
                .iter()
                .filter(|(_, k)| k.starts_with("1x100@"))
                .filter_map(|(o, k)| runs.med("pubsub", k, l, f).map(|v| (*o, v)))
                .collect();
            if !pts.is_empty() {
                series.push((format!("{l} {f}"), pts));
            }
        }
        for (offered, k) in &lat_rows {
            let base = k.split('@').next().unwrap_or("");
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} |",
                base.replace('x', "→"),
                fmt_rate(Some(*offered)),
                pub_max(base, w).map_or("–".into(), |m| format!("{:.2}", offered / m)),
                fmt_ms(runs.med("pubsub", k, w, "p50")),
                fmt_ms(runs.med("pubsub", k, w, "p99")),
                fmt_ms(runs.med("pubsub", k, w, "max")),
                fmt_ms(runs.med("pubsub", k, b, "p50")),
                fmt_ms(runs.med("pubsub", k, b, "p99")),
                fmt_ms(runs.med("pubsub", k, b, "max")),
                fmt_rate(runs.med("pubsub", k, w, "rate")),
                runs.errors("pubsub", k, w),
                runs.errors("pubsub", k, b),
                runs.get("pubsub", k, w).len(),
                runs.get("pubsub", k, b).len(),
                other_cpu(&runs, "pubsub", k),
            );
        }
        let _ = writeln!(md);
        let file = "latency_vs_load.svg";
        plot(
            &plots.join(file),
            "pub-sub 1→100: delivery latency vs offered load (median of runs)",
            "offered deliveries/s",
            "latency ms (log)",
            &series,
            false,
            true,
        )?;
        let _ = writeln!(
            md,
            "![latency percentiles vs offered load]({plot_rel}/{file})\n"
        );
    }

    // ---------- API at a fixed rate
    let api_fixed: Vec<String> = runs
        .keys(&all, "api")
        .into_iter()
        .filter(|k| k.contains('@'))
        .collect();
    if !api_fixed.is_empty() {
        let _ = writeln!(md, "## API at a fixed rate\n");
        let _ = writeln!(
            md,
            "| server | clients@req/s | achieved req/s | p50 | p99 | max | errors | runs |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        for k in &api_fixed {
            for l in [w, b] {
                if runs.get("api", k, l).is_empty() {
                    continue;
                }
                let _ = writeln!(
                    md,
                    "| {l} | {k} | {} | {} | {} | {} | {} | {} |",
                    fmt_rate(runs.med("api", k, l, "rate")),
                    fmt_ms(runs.med("api", k, l, "p50")),
                    fmt_ms(runs.med("api", k, l, "p99")),
                    fmt_ms(runs.med("api", k, l, "max")),
                    runs.errors("api", k, l),
                    runs.get("api", k, l).len()
                );
            }
        }
        let _ = writeln!(md);
    }

    // ---------- push-pull and fan-in-out
    let work: Vec<(&str, String)> = ["pushpull", "fanout"]
        .iter()
        .flat_map(|s| runs.keys(&all, s).into_iter().map(move |k| (*s, k)))
        .collect();
    if !work.is_empty() {
        let _ = writeln!(
            md,
            "## Work distribution: push-pull and fan-in-out (wrs only)\n"
        );
        let _ = writeln!(
            md,
            "The baseline only echoes and broadcasts, so these have no ratio. Fairness is the \
             smallest worker's share divided by the largest's (1.0 = perfectly even).\n"
        );
        let _ = writeln!(md, "| scenario | producer x workers | unit | rate | p50 | p99 | max | fairness (min/max) | errors | runs |");
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        for (s, k) in &work {
            let unit = runs
                .get(s, k, w)
                .first()
                .map(|o| o.unit.clone())
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "| {s} | {k} | {unit} | {} | {} | {} | {} | {} | {} | {} |",
                fmt_rate(runs.med(s, k, w, "rate")),
                fmt_ms(runs.med(s, k, w, "p50")),
                fmt_ms(runs.med(s, k, w, "p99")),
                fmt_ms(runs.med(s, k, w, "max")),
                runs.med(s, k, w, "fairness")
                    .map_or("–".into(), |f| format!("{f:.3}")),
                runs.errors(s, k, w),
                runs.get(s, k, w).len()
            );
        }
        let _ = writeln!(md);
    }

    // ---------- idle connections
    let conn_keys = runs.keys(&all, "conns");
    if !conn_keys.is_empty() {
        let _ = writeln!(md, "## Idle connections and memory\n");
        let _ = writeln!(
            md,
            "Connections opened in steps from 50 source addresses (127.0.0.x), held idle; the \
             server's VmRSS is read from /proc after each step. KiB per connection = (RSS with \
             all connections held − RSS before the first) ÷ connections. Each run starts on a \
             freshly started server process: in a process that already held connections, freed \
             memory is reused and the per-connection figure comes out too low. *Closed* is the \
             RSS 1.5 s after all connections were dropped.\n"
        );
        let _ = writeln!(md, "| server | asked | held | failed | KiB / connection | RSS before → held → closed (MiB) | connects/s | runs |");
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        for k in &conn_keys {
            for l in [w, b] {
                if runs.get("conns", k, l).is_empty() {
                    continue;
                }
                let m = |f: &str| runs.med("conns", k, l, f);
                let _ = writeln!(
                    md,
                    "| {l} | {k} | {} | {} | {} | {:.1} → {:.1} → {} | {} | {} |",
                    fmt_rate(m("ok")),
                    fmt_rate(m("failed")),
                    m("kib_per_conn").map_or("–".into(), |v| format!("{v:.2}")),
                    m("rss_before_kib").unwrap_or(0.0) / 1024.0,
                    m("rss_after_kib").unwrap_or(0.0) / 1024.0,
                    m("rss_closed_kib").map_or("–".into(), |v| format!("{:.1}", v / 1024.0)),
                    fmt_rate(m("connects_per_s")),
                    runs.get("conns", k, l).len()
                );
            }
        }
        let _ = writeln!(md);
        let mut series = Vec::new();
        for l in [w, b] {
            // median RSS per step over the runs of the largest key
            let mut steps: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
            for o in runs.get("conns", &conns_key, l) {
                if let Some(curve) = o.extra.get("curve").and_then(|c| c.as_array()) {
                    for p in curve {
                        if let (Some(n), Some(r)) = (p[0].as_u64(), p[1].as_f64()) {
                            steps.entry(n / 100 * 100).or_default().push(r / 1024.0);
                        }
                    }
                }
            }
            let pts: Vec<(f64, f64)> = steps
                .into_iter()
                .map(|(n, mut v)| (n as f64, median(&mut v)))
                .collect();
            if !pts.is_empty() {
                series.push((l.to_string(), pts));
            }
        }
        if !series.is_empty() {
            let file = "rss_vs_connections.svg";
            plot(
                &plots.join(file),
                "server RSS vs idle WebSocket connections (median of runs)",
                "connections",
                "RSS MiB",
                &series,
                false,
                false,
            )?;
            let _ = writeln!(md, "![RSS vs connections]({plot_rel}/{file})\n");
        }
    }

    // ---------- cluster plans
    let mut cl = runs.keys(&all, "cluster");
    // plan by plan, 1 node before 3 nodes
    let plan_rank = |k: &str| {
        let plan = k.split('/').next().unwrap_or("");
        let i = crate::cluster::PLANS
            .iter()
            .position(|p| *p == plan)
            .unwrap_or(9);
        let n: u32 = k
            .split('/')
            .nth(1)
            .and_then(|n| n.trim_end_matches('n').parse().ok())
            .unwrap_or(0);
        (i, n)
    };
    cl.sort_by_key(|k| plan_rank(k));
    if !cl.is_empty() {
        let _ = writeln!(md, "## Cluster plans (thesis table 12)\n");
        let _ = writeln!(
            md,
            "The thesis' four JMeter plans, rebuilt: `api` = create → get → delete (each call on \
             a different node when there are several), `ws` = 10 clients per pre-created pub-sub \
             channel each sending 10 msg/s, `mixed` = create → connect two clients (on two other \
             nodes) → 10 awaited messages → delete, `readonly` = GETs of 100 channels. Operations \
             are HTTP requests, WebSocket connects and message deliveries; errors include lost \
             messages. The scenario takes one `--url` per node (`wrs-bench cluster --url \
             http://a:8080 --url http://b:8080 --url http://c:8080`).{}\n",
            if cl.iter().any(|k| k.ends_with("/3n")) {
                " The 3-node rows ran three wrs nodes on this same machine (joined with \
                 `WRS_JOIN`), so they share its cores: they show correctness under load and \
                 the cost of the extra hops, not scaling."
            } else {
                " Only the 1-node rows were measured (no 3-node cluster was formed in this run)."
            }
        );
        let _ = writeln!(md, "| plan | nodes | clients | ops/s | ops in window | avg ms | p50 | p99 | max | errors | err % | runs |");
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for k in &cl {
            let g = runs.get("cluster", k, w);
            let Some(first) = g.first() else { continue };
            let m = |f: &str| runs.med("cluster", k, w, f);
            let (plan, nodes) = k.split_once('/').unwrap_or((k, ""));
            let _ = writeln!(
                md,
                "| {plan} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                nodes.trim_end_matches('n'),
                first
                    .params
                    .get("clients")
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                fmt_rate(m("rate")),
                fmt_rate(m("ops")),
                fmt_ms(m("mean")),
                fmt_ms(m("p50")),
                fmt_ms(m("p99")),
                fmt_ms(m("max")),
                runs.errors("cluster", k, w),
                m("error_pct").map_or("–".into(), |v| format!("{v:.2}")),
                g.len()
            );
        }
        let _ = writeln!(md);
    }

    // ---------- server-side profile (scripts/bench.sh --perf)
    let mut profiles = Vec::new();
    for (name, what) in [
        ("perf-pubsub.txt", "pub-sub 1→100, max rate"),
        ("perf-api.txt", "api, 50 clients, max rate"),
        ("perf-echo.txt", "echo, 50 clients"),
    ] {
        let t = read(name);
        if !t.trim().is_empty() {
            profiles.push((what, t));
        }
    }
    let notes = read("notes.md");
    if !notes.trim().is_empty() || !profiles.is_empty() {
        let _ = writeln!(md, "## Where wrs spends its time\n");
        if !notes.trim().is_empty() {
            let _ = writeln!(md, "{}\n", notes.trim());
        }
        for (what, t) in profiles {
            let _ = writeln!(
                md,
                "<details><summary>perf profile of the wrs process: {what}</summary>\n\n```\n{}\n```\n\n</details>\n",
                t.trim_end()
            );
        }
    }

    // ---------- method
    let _ = writeln!(md, "## How it is measured\n");
    let _ = writeln!(md, "{}", METHOD.trim());
    let _ = writeln!(md);
    if !commands.is_empty() {
        let _ = writeln!(
            md,
            "## Exact commands\n\n<details><summary>every command the script ran, in order</summary>\n\n```\n{}\n```\n\n</details>\n",
            commands.trim()
        );
    }
    let _ = writeln!(
        md,
        "Raw results (one JSON object per run): [`{plot_rel}/results.jsonl`]({plot_rel}/results.jsonl)."
    );
    std::fs::write(out, md).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(())
}

const METHOD: &str = r#"
- **Generator**: `wrs-bench`, tokio with 2 worker threads, tokio-tungstenite clients with a
  4 KiB read buffer (the 128 KiB default would make `conns` measure the client), a hand-rolled
  HTTP/1.1 keep-alive client, hdrhistogram for percentiles. Every run has a warm-up, a
  measurement window and a short drain; only events inside the window count.
- **Same box**: generator, wrs and the baseline share the machine's cores, so a server that
  uses less CPU per message leaves more for the generator; ratios above 1 are possible.
  Runs alternate between wrs and the baseline so drift affects both alike. Other work on the
  machine (builds, tests of other engineers) adds noise. *Unattributed CPU %* (wrs run /
  baseline run) is the share of the machine's CPU time (100 % = all cores) during a run that
  was charged neither to the generator nor to the server under test, from /proc/stat and
  /proc/<pid>/stat: other processes (builds, tests, the FUSE daemon of this container's
  file system writing the server's log) *and* kernel softirq work of the loopback traffic,
  which grows with the message rate. It is a rough noise indicator, not a correction.
- **pub-sub**: messages are 64 B text frames carrying publisher id, sequence number and a
  timestamp (one monotonic clock in the generator's process, so no clock sync is needed).
  *Deliveries/s* counts messages received by subscribers (in P→S with P > 1 each publisher
  also receives the other publishers' messages; those are drained but not counted). In
  max-rate mode each publisher keeps at most 64 messages per subscriber in flight (it learns of
  deliveries from its own subscribers), so the rate is the server's and no backlog builds up.
  Lost and duplicated messages are counted per (subscriber, publisher) from sequence numbers,
  after a drain of up to 2 s.
- **Latency**: delivery latency = receive time − timestamp in the payload. In fixed-rate mode
  the timestamp is the actual send time while the generator is on schedule (within 2 ms:
  tokio's timer ticks in 1 ms), and the scheduled time + 2 ms when it is later than that, so a
  server that holds the generator back (flow-control window, full socket) is charged for the
  wait (no coordinated omission). Echo latency is the round trip; API latency is per request,
  measured the same way.
- **echo**: N clients in a closed loop (one message in flight each) on one echo channel.
- **api**: keep-alive clients looping `POST /channels` → `GET /channels/{id}` →
  `DELETE /channels/{id}`; every request counts. The baseline's REST side is a stub (a
  hand-parsed HTTP/1.1 with a `HashMap`), so the API ratio compares actix-web + wrs's
  validation against almost nothing.
- **baseline-relay**: tokio (2 workers) + tokio-tungstenite, one unbounded queue and one
  writer task per client (drain, then one flush), a `Mutex<Vec>` per room, TCP_NODELAY, a
  4 KiB read buffer. No limits, no validation, no timeouts, no patterns beyond echo and
  broadcast.
"#;

trait IfEmpty {
    fn if_empty<'a>(&'a self, other: &'a str) -> &'a str;
}

impl IfEmpty for str {
    fn if_empty<'a>(&'a self, other: &'a str) -> &'a str {
        if self.is_empty() {
            other
        } else {
            self
        }
    }
}

/// `target` relative to `base` (both relative to the same working directory).
fn relative(target: &Path, base: &Path) -> String {
    let t: Vec<_> = target.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".into(); b.len() - common];
    parts.extend(
        t[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// A line chart with points; log axes are drawn by plotting log10 values.
fn plot(
    path: &Path,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_x: bool,
    log_y: bool,
) -> AnyResult<()> {
    let tx = |v: f64| if log_x { v.max(1e-9).log10() } else { v };
    let ty = |v: f64| if log_y { v.max(1e-3).log10() } else { v };
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(tx(x));
        x1 = x1.max(tx(x));
        y0 = y0.min(ty(y));
        y1 = y1.max(ty(y));
    }
    if x0 > x1 {
        return Ok(());
    }
    let padx = ((x1 - x0) * 0.05).max(if log_x { 0.1 } else { 1.0 });
    let (x0, x1) = (x0 - padx, x1 + padx);
    let (y0, y1) = if log_y {
        (y0.floor(), y1.ceil().max(y0.floor() + 1.0))
    } else {
        (0.0, y1 * 1.1 + 1e-9)
    };
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    let fmt_axis = |v: f64, log: bool| {
        let v = if log { 10f64.powf(v) } else { v };
        if v.abs() >= 1e6 {
            format!("{:.1}M", v / 1e6)
        } else if v.abs() >= 1e3 {
            format!("{:.0}k", v / 1e3)
        } else if v.abs() >= 1.0 || v == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    chart
        .configure_mesh()
        .x_desc(xlabel)
        .y_desc(ylabel)
        .x_label_formatter(&|v| fmt_axis(*v, log_x))
        .y_label_formatter(&|v| fmt_axis(*v, log_y))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let data: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (tx(x), ty(y))).collect();
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(data.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("docs/bench"), Path::new("docs")),
            "bench"
        );
        assert_eq!(
            relative(Path::new("docs/bench"), Path::new("target/x")),
            "../../docs/bench"
        );
    }

    #[test]
    fn targets_say_by_how_much() {
        let t = target_ge("x", 20_000.0, Some(15_000.0), "req/s");
        assert_eq!(t.met, Some(false));
        assert!(t.gap.contains("25.0 %"), "{}", t.gap);
        let t = target_le("y", 5.0, Some(4.0), "ms", true);
        assert_eq!(t.met, Some(true));
        assert_eq!(target_le("z", 8.0, None, "KiB", false).met, None);
    }
}
