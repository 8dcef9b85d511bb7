//! Configuration: every setting is a `WRS_*` environment variable, the common ones also a CLI
//! flag that overrides it. Parsed and validated once at start; errors name the variable.
//!
//! Variables are read through a lookup function rather than clap's `env` attribute: unit tests
//! pass a map instead of mutating the process environment (which tests run in parallel share),
//! and the alias rule (the thesis' spellings; both set and different is an error naming both)
//! needs to see both values, which clap's one-variable-per-flag `env` cannot express.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use regex::Regex;
use thiserror::Error;

/// Command-line flags; each overrides the environment variable named in its help text.
#[derive(Debug, Default, Parser)]
#[command(name = "wrs", version, about = "wrs — the WebSocket Relay Service")]
pub struct Cli {
    /// Port of the REST API and WebSockets (WRS_API_PORT)
    #[arg(short = 'p', long = "portAPI")]
    pub port_api: Option<String>,
    /// Port for cluster peer traffic (WRS_NODE_PORT)
    #[arg(short = 'n', long = "portNode")]
    pub port_node: Option<String>,
    /// Protect the API with a token (WRS_AUTH); `--auth` alone means true
    #[arg(short = 'a', long = "auth", num_args = 0..=1, default_missing_value = "true")]
    pub auth: Option<String>,
    /// The API token (WRS_AUTH_TOKEN)
    #[arg(short = 't', long = "token")]
    pub token: Option<String>,
    /// Serve https/wss (WRS_SSL); `--ssl` alone means true
    #[arg(short = 's', long = "ssl", num_args = 0..=1, default_missing_value = "true")]
    pub ssl: Option<String>,
}

#[derive(Debug, Error, PartialEq)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

fn bad(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

/// Whether a `host:port` (or `[v6]:port`, or a bare host) names this machine's loopback.
pub fn is_loopback_address(address: &str) -> bool {
    let host = match address.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => address,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One `WRS_AUTH_RESOURCES` entry: a method (`None` = any) and a path regex anchored at the start.
#[derive(Debug, Clone)]
pub struct AuthRule {
    pub method: Option<String>,
    pub path: Regex,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Which browser origins may call the REST API (`WRS_CORS_ORIGINS`).
#[derive(Debug, Clone, PartialEq)]
pub enum CorsOrigins {
    /// `*`, the default: any page may call the API (the API token, not the origin, is the guard).
    Any,
    /// Exactly these `scheme://host[:port]` origins (or `null`, a page opened from a file).
    List(Vec<String>),
}

/// A Markdown file served at `/readme` instead of the built-in README (`WRS_README_PATH`).
#[derive(Debug, Clone)]
pub struct Readme {
    pub path: PathBuf,
    pub markdown: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub api_port: u16,
    pub public_api_port: u16,
    pub domain: String,
    pub node_port: u16,
    pub auth: bool,
    pub auth_token: String,
    /// Empty = every route is protected (when `auth` is on).
    pub auth_rules: Vec<AuthRule>,
    pub tls: Option<Tls>,
    pub browser_only: bool,
    pub token_length: usize,
    pub id_length: usize,
    pub debug: bool,
    pub max_message_size: usize,
    pub client_queue: usize,
    /// Bytes queued for one client before it is a slow consumer (`WRS_CLIENT_QUEUE_BYTES`).
    pub client_queue_bytes: usize,
    /// Payload bytes a channel's history keeps at most, per channel (`WRS_HISTORY_BYTES`).
    pub history_bytes: usize,
    /// Payload bytes all of a node's channel histories keep together
    /// (`WRS_HISTORY_TOTAL_BYTES`).
    pub history_total_bytes: usize,
    pub max_channels: usize,
    pub max_body: usize,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub workers: usize,
    pub node_heartbeat: Duration,
    pub node_min_election_timeout: Duration,
    pub node_max_election_timeout: Duration,
    pub node_snapshot_length: u64,
    /// A member the leader has not heard from this long is marked down (`WRS_NODE_DOWN_AFTER`).
    pub node_down_after: Duration,
    /// A member down this long is removed; `None` = never (`WRS_NODE_REMOVE_AFTER=-1`).
    pub node_remove_after: Option<Duration>,
    pub join: Vec<String>,
    pub cluster_secret: Option<String>,
    pub cors_origins: CorsOrigins,
    /// TLS ends at a proxy in front of this node: the `url`s it hands out say `wss://`.
    pub public_ssl: bool,
    pub readme: Option<Readme>,
    /// `ws(s)://host[:port]` that replaces `WRS_DOMAIN:WRS_PUBLIC_API_PORT` in handed-out URLs,
    /// for a node whose `WRS_DOMAIN` is an internal name (a pod behind an ingress).
    pub public_url: Option<String>,
    /// `WRS_CONNECT_TO_OWNER`: the `url` a create response hands out (and `data.url` in channel
    /// views) names the channel's owner node (its `WRS_DOMAIN:WRS_PUBLIC_API_PORT`), so clients
    /// that follow it skip the proxy hop. Only for nodes clients can reach one by one, hence
    /// never together with `public_url`.
    pub connect_to_owner: bool,
    /// Upper bound of the random wait before discovery, so nodes started together spread out.
    pub max_startup_delay: Duration,
    /// `WRS_DATA_DIR`: where the Raft log, hard state and snapshots are kept; `None` keeps
    /// everything in memory (and writes no files).
    pub data_dir: Option<std::path::PathBuf>,
}

/// Largest integer a JSON number carries exactly (2^53), the bound for limits and timeouts.
pub const MAX_SAFE_INTEGER: i64 = 1 << 53;

impl Config {
    /// Reads the process environment and the command line.
    pub fn from_env_and_args() -> Result<Config, ConfigError> {
        let cli = Cli::parse();
        Config::load(|k| std::env::var(k).ok(), cli)
    }

    /// Builds the configuration from a variable lookup (the environment, or a map in tests)
    /// and the CLI flags, which win.
    pub fn load(env: impl Fn(&str) -> Option<String>, cli: Cli) -> Result<Config, ConfigError> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let or_cli = |cli: Option<String>, k: &str| cli.or_else(|| get(k));

        let api_port = port("WRS_API_PORT", or_cli(cli.port_api, "WRS_API_PORT"), 8080)?;
        let public_api_port = port("WRS_PUBLIC_API_PORT", get("WRS_PUBLIC_API_PORT"), api_port)?;
        let node_port = port(
            "WRS_NODE_PORT",
            or_cli(cli.port_node, "WRS_NODE_PORT"),
            4000,
        )?;
        let auth = boolean("WRS_AUTH", or_cli(cli.auth, "WRS_AUTH"), false)?;
        let auth_token = or_cli(cli.token, "WRS_AUTH_TOKEN").unwrap_or_default();
        if auth && auth_token.is_empty() {
            return Err(bad(
                "WRS_AUTH_TOKEN",
                "must be set when WRS_AUTH=true (or use -t/--token)",
            ));
        }
        let auth_rules = auth_rules(
            aliased(&get, "WRS_AUTH_RESOURCES", "WRS_AUTH_RESSOURCES")?
                .as_deref()
                .unwrap_or(""),
        )?;
        let ssl = boolean("WRS_SSL", or_cli(cli.ssl, "WRS_SSL"), false)?;
        let tls = if ssl {
            let cert = get("WRS_SSL_CERT_PATH")
                .ok_or_else(|| bad("WRS_SSL_CERT_PATH", "must be set when WRS_SSL=true"))?;
            let key = get("WRS_SSL_KEY_PATH")
                .ok_or_else(|| bad("WRS_SSL_KEY_PATH", "must be set when WRS_SSL=true"))?;
            Some(Tls {
                cert: cert.into(),
                key: key.into(),
            })
        } else {
            None
        };
        let token_length = number("WRS_TOKEN_LENGTH", get("WRS_TOKEN_LENGTH"), 32, 32, 256)?;
        let min_election = millis(
            "WRS_NODE_MIN_ELECTION_TIMEOUT",
            get("WRS_NODE_MIN_ELECTION_TIMEOUT"),
            2000,
        )?;
        let max_election = millis(
            "WRS_NODE_MAX_ELECTION_TIMEOUT",
            get("WRS_NODE_MAX_ELECTION_TIMEOUT"),
            3000,
        )?;
        if max_election < min_election {
            return Err(bad(
                "WRS_NODE_MAX_ELECTION_TIMEOUT",
                "must not be smaller than WRS_NODE_MIN_ELECTION_TIMEOUT",
            ));
        }
        let node_heartbeat = millis("WRS_NODE_HEARTBEAT", get("WRS_NODE_HEARTBEAT"), 300)?;
        let node_down_after = millis("WRS_NODE_DOWN_AFTER", get("WRS_NODE_DOWN_AFTER"), 5000)?;
        if node_down_after < (2 * node_heartbeat).max(Duration::from_millis(200)) {
            return Err(bad(
                "WRS_NODE_DOWN_AFTER",
                "must be at least two WRS_NODE_HEARTBEATs and at least 200 ms",
            ));
        }
        let node_remove_after = number(
            "WRS_NODE_REMOVE_AFTER",
            get("WRS_NODE_REMOVE_AFTER"),
            60_000i64,
            -1,
            1 << 40,
        )?;
        let node_remove_after =
            (node_remove_after >= 0).then(|| Duration::from_millis(node_remove_after as u64));
        let ping_interval = millis("WRS_PING_INTERVAL", get("WRS_PING_INTERVAL"), 30_000)?;
        let ping_timeout = millis("WRS_PING_TIMEOUT", get("WRS_PING_TIMEOUT"), 90_000)?;
        if ping_interval.is_zero() || ping_timeout <= ping_interval {
            return Err(bad(
                "WRS_PING_TIMEOUT",
                "must be larger than WRS_PING_INTERVAL, and the interval above 0",
            ));
        }
        let join: Vec<String> = get("WRS_JOIN")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let cluster_secret = get("WRS_CLUSTER_SECRET").filter(|s| !s.is_empty());
        if cluster_secret.is_none() {
            if let Some(remote) = join.iter().find(|a: &&String| !is_loopback_address(a)) {
                return Err(bad(
                    "WRS_CLUSTER_SECRET",
                    format!(
                        "must be set when WRS_JOIN names another host ({remote}): without it the \
                         peer port listens on loopback only and accepts any caller there"
                    ),
                ));
            }
        }
        let public_url = get("WRS_PUBLIC_URL").map(public_url).transpose()?;
        let connect_to_owner = boolean("WRS_CONNECT_TO_OWNER", get("WRS_CONNECT_TO_OWNER"), false)?;
        if connect_to_owner && public_url.is_some() {
            return Err(bad(
                "WRS_CONNECT_TO_OWNER",
                "cannot be true while WRS_PUBLIC_URL is set: WRS_PUBLIC_URL is one address for \
                 every node, so clients cannot be sent to a channel's owner node; unset \
                 WRS_PUBLIC_URL (each node then advertises its own WRS_DOMAIN:WRS_PUBLIC_API_PORT) \
                 or set WRS_CONNECT_TO_OWNER=false",
            ));
        }
        let default_workers = std::thread::available_parallelism().map_or(2, |n| n.get());

        Ok(Config {
            bind: get("WRS_BIND").unwrap_or_else(|| "0.0.0.0".into()),
            api_port,
            public_api_port,
            domain: get("WRS_DOMAIN").unwrap_or_else(|| "127.0.0.1".into()),
            node_port,
            auth,
            auth_token,
            auth_rules,
            tls,
            browser_only: boolean("WRS_BROWSER_ONLY", get("WRS_BROWSER_ONLY"), false)?,
            token_length,
            id_length: number("WRS_ID_LENGTH", get("WRS_ID_LENGTH"), 8, 4, 64)?,
            debug: boolean("WRS_DEBUG", get("WRS_DEBUG"), false)?,
            max_message_size: number(
                "WRS_MAX_MESSAGE_SIZE",
                get("WRS_MAX_MESSAGE_SIZE"),
                1 << 20,
                1,
                1 << 30,
            )?,
            client_queue: number(
                "WRS_CLIENT_QUEUE",
                get("WRS_CLIENT_QUEUE"),
                1024,
                1,
                1 << 20,
            )?,
            client_queue_bytes: number(
                "WRS_CLIENT_QUEUE_BYTES",
                get("WRS_CLIENT_QUEUE_BYTES"),
                4 << 20,
                1,
                1 << 32,
            )?,
            history_bytes: number(
                "WRS_HISTORY_BYTES",
                get("WRS_HISTORY_BYTES"),
                1 << 20,
                0,
                1 << 30,
            )?,
            history_total_bytes: number(
                "WRS_HISTORY_TOTAL_BYTES",
                get("WRS_HISTORY_TOTAL_BYTES"),
                64 << 20,
                0,
                1 << 40,
            )?,
            max_channels: number(
                "WRS_MAX_CHANNELS",
                get("WRS_MAX_CHANNELS"),
                100_000,
                0,
                1 << 32,
            )?,
            max_body: number("WRS_MAX_BODY", get("WRS_MAX_BODY"), 64 << 10, 64, 1 << 30)?,
            ping_interval,
            ping_timeout,
            shutdown_timeout: millis("WRS_SHUTDOWN_TIMEOUT", get("WRS_SHUTDOWN_TIMEOUT"), 5000)?,
            workers: number("WRS_WORKERS", get("WRS_WORKERS"), default_workers, 1, 1024)?,
            node_heartbeat,
            node_min_election_timeout: min_election,
            node_max_election_timeout: max_election,
            node_snapshot_length: number(
                "WRS_NODE_SNAPSHOT_LENGTH",
                aliased(&get, "WRS_NODE_SNAPSHOT_LENGTH", "WRS_NODE_SNAPSHOT_LENGHT")?,
                10_000,
                1,
                1 << 40,
            )?,
            node_down_after,
            node_remove_after,
            join,
            cluster_secret,
            cors_origins: cors_origins(get("WRS_CORS_ORIGINS").as_deref().unwrap_or("*"))?,
            public_ssl: boolean("WRS_PUBLIC_SSL", get("WRS_PUBLIC_SSL"), false)?,
            readme: get("WRS_README_PATH").map(readme).transpose()?,
            public_url,
            connect_to_owner,
            max_startup_delay: number(
                "WRS_MAX_STARTUP_DELAY",
                get("WRS_MAX_STARTUP_DELAY"),
                0,
                0,
                3_600_000,
            )
            .map(Duration::from_millis)?,
            data_dir: get("WRS_DATA_DIR").map(|d| std::path::PathBuf::from(d.trim())),
        })
    }

    /// Where the peer port listens: `WRS_BIND` with a cluster secret, loopback without one (an
    /// open peer port is as powerful as a node, so it is never exposed unauthenticated).
    pub fn peer_bind(&self) -> &str {
        if self.cluster_secret.is_some() {
            &self.bind
        } else if self.bind.contains(':') {
            "::1"
        } else {
            "127.0.0.1"
        }
    }

    /// The scheme of the WebSocket URLs this node hands out: `wss` when it serves TLS itself or
    /// a proxy in front of it does (`WRS_PUBLIC_SSL`).
    pub fn ws_scheme(&self) -> &'static str {
        if self.tls.is_some() || self.public_ssl {
            "wss"
        } else {
            "ws"
        }
    }

    /// `ws(s)://WRS_DOMAIN:WRS_PUBLIC_API_PORT`, the start of every WebSocket URL this node
    /// hands out (an IPv6 address gets its brackets).
    pub fn public_ws_base(&self) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        format!(
            "{}://{}:{}",
            self.ws_scheme(),
            bracketed(&self.domain),
            self.public_api_port
        )
    }

    /// `ws(s)://host:port` for another member's advertised API address (`Member.api`,
    /// `WRS_DOMAIN:WRS_PUBLIC_API_PORT` of that node, an IPv6 host with or without brackets),
    /// with this node's scheme: the nodes of one cluster are configured alike.
    pub fn ws_base_of(&self, api: &str) -> String {
        let host_port = match api.rsplit_once(':') {
            Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                format!("{}:{port}", bracketed(host))
            }
            _ => bracketed(api),
        };
        format!("{}://{host_port}", self.ws_scheme())
    }

    /// The scheme a browser uses to reach this node.
    pub fn http_scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// A host for a URL: an IPv6 address gets its brackets (once).
fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// A variable that also has the thesis' spelling (its table 14 says `WRS_AUTH_RESSOURCES` and
/// `WRS_NODE_SNAPSHOT_LENGHT`): either may be set; both set and different is an error naming
/// both, because silently preferring one would hide a typo'd override.
fn aliased(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    alias: &'static str,
) -> Result<Option<String>, ConfigError> {
    match (get(var), get(alias)) {
        (Some(a), Some(b)) if a.trim() != b.trim() => Err(bad(
            var,
            format!(
                "{var} and {alias} (the thesis' spelling of the same setting) are both set, to \
                 different values ({a:?} and {b:?}); set only one"
            ),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// Parses `WRS_CORS_ORIGINS`: `*`, or space-separated origins as a browser sends them in its
/// `Origin` header (`scheme://host[:port]`, no path; `null` for pages opened from a file).
fn cors_origins(spec: &str) -> Result<CorsOrigins, ConfigError> {
    let entries: Vec<&str> = spec.split_whitespace().collect();
    if entries.is_empty() || entries.contains(&"*") {
        return Ok(CorsOrigins::Any);
    }
    let origin = Regex::new(r"^(null|[a-z][a-z0-9+.-]*://[^/?#\s]+)$").expect("a valid regex");
    entries
        .into_iter()
        .map(|e| {
            if origin.is_match(e) {
                Ok(e.to_owned())
            } else {
                Err(bad(
                    "WRS_CORS_ORIGINS",
                    format!(
                        "{e:?} is not an origin: write scheme://host[:port] without a path, \
                         e.g. http://localhost:3000, or * for any"
                    ),
                ))
            }
        })
        .collect::<Result<_, _>>()
        .map(CorsOrigins::List)
}

/// Parses `WRS_PUBLIC_URL`: `ws://` or `wss://` and a host (and port), nothing after it.
fn public_url(url: String) -> Result<String, ConfigError> {
    let base = url.trim().trim_end_matches('/');
    let shape = Regex::new(r"^wss?://[^/?#\s]+$").expect("a valid regex");
    if shape.is_match(base) {
        Ok(base.to_owned())
    } else {
        Err(bad(
            "WRS_PUBLIC_URL",
            format!("{url:?} is not ws://host[:port] or wss://host[:port] without a path"),
        ))
    }
}

/// Reads `WRS_README_PATH` at start, so a missing or unreadable file stops the node with its
/// name instead of serving an error page later.
fn readme(path: String) -> Result<Readme, ConfigError> {
    let markdown = std::fs::read_to_string(&path)
        .map_err(|e| bad("WRS_README_PATH", format!("cannot read {path}: {e}")))?;
    Ok(Readme {
        path: path.into(),
        markdown,
    })
}

fn boolean(var: &'static str, v: Option<String>, default: bool) -> Result<bool, ConfigError> {
    match v.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(s) if matches!(s.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
        Some(s) if matches!(s.as_str(), "false" | "0" | "no" | "off") => Ok(false),
        Some(s) => Err(bad(var, format!("expected true or false, got {s:?}"))),
    }
}

fn number<T>(
    var: &'static str,
    v: Option<String>,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(s) = v else { return Ok(default) };
    let n: T = s
        .trim()
        .parse()
        .map_err(|_| bad(var, format!("expected a whole number, got {s:?}")))?;
    if n < min || n > max {
        return Err(bad(
            var,
            format!("must be between {min} and {max}, got {n}"),
        ));
    }
    Ok(n)
}

fn port(var: &'static str, v: Option<String>, default: u16) -> Result<u16, ConfigError> {
    number(var, v, default, 0, u16::MAX)
}

fn millis(var: &'static str, v: Option<String>, default: u64) -> Result<Duration, ConfigError> {
    number(var, v, default, 0, 1 << 40).map(Duration::from_millis)
}

/// Parses `WRS_AUTH_RESOURCES`: space-separated `METHOD:regex`; `*` = any method / every path;
/// an entry without `:` is a path for any method.
pub fn auth_rules(spec: &str) -> Result<Vec<AuthRule>, ConfigError> {
    spec.split_whitespace()
        .map(|entry| {
            let (method, path) = match entry.split_once(':') {
                Some((m, p)) => (m, p),
                None => ("*", entry),
            };
            let method = match method.trim() {
                "*" | "" => None,
                m if m.chars().all(|c| c.is_ascii_alphabetic()) => Some(m.to_ascii_uppercase()),
                m => {
                    return Err(bad(
                        "WRS_AUTH_RESOURCES",
                        format!("{m:?} in {entry:?} is not an HTTP method or *"),
                    ))
                }
            };
            let pattern = if path == "*" || path.is_empty() {
                ".*"
            } else {
                path
            };
            let path = Regex::new(&format!("^(?:{pattern})")).map_err(|e| {
                bad(
                    "WRS_AUTH_RESOURCES",
                    format!("{entry:?} is not a valid regex: {e}"),
                )
            })?;
            Ok(AuthRule { method, path })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn without_a_secret_the_peer_port_is_loopback_and_remote_joins_are_refused() {
        let c = load(&[("WRS_BIND", "0.0.0.0")]).expect("defaults load");
        assert_eq!(c.peer_bind(), "127.0.0.1");
        let c = load(&[("WRS_BIND", "0.0.0.0"), ("WRS_CLUSTER_SECRET", "s")]).expect("load");
        assert_eq!(c.peer_bind(), "0.0.0.0");
        for ok in ["127.0.0.1:8080", "localhost:1", "[::1]:80", "127.0.0.2:9"] {
            assert!(load(&[("WRS_JOIN", ok)]).is_ok(), "{ok}");
        }
        for remote in ["10.0.0.1:8080", "wrs-0.wrs-peers:8080", "[2001:db8::1]:80"] {
            let join = format!("127.0.0.1:8080,{remote}");
            let err = load(&[("WRS_JOIN", join.as_str())]).expect_err(remote);
            assert_eq!(err.var, "WRS_CLUSTER_SECRET");
            assert!(err.problem.contains(remote), "{}", err.problem);
            assert!(load(&[("WRS_JOIN", join.as_str()), ("WRS_CLUSTER_SECRET", "s")]).is_ok());
        }
    }

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(|k| map.get(k).cloned(), Cli::default())
    }

    #[test]
    fn defaults_need_nothing_and_use_an_unprivileged_port() {
        let c = load(&[]).expect("defaults are valid");
        assert_eq!(c.api_port, 8080);
        assert_eq!(c.public_api_port, 8080);
        assert!(!c.auth && c.tls.is_none() && !c.browser_only);
        assert_eq!(c.max_message_size, 1 << 20);
        assert_eq!(c.client_queue, 1024);
        assert_eq!(c.client_queue_bytes, 4 << 20);
        assert_eq!(c.history_bytes, 1 << 20);
        assert_eq!(c.history_total_bytes, 64 << 20);
        assert_eq!(c.max_channels, 100_000);
        assert_eq!(c.max_body, 65536);
        assert_eq!(c.token_length, 32);
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (var, val) in [
            ("WRS_API_PORT", "abc"),
            ("WRS_API_PORT", "70000"),
            ("WRS_AUTH", "maybe"),
            ("WRS_TOKEN_LENGTH", "8"),
            ("WRS_MAX_MESSAGE_SIZE", "-1"),
            ("WRS_AUTH_RESOURCES", "GET:/channels("),
        ] {
            let err = load(&[(var, val)]).expect_err(var);
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn auth_without_token_and_ssl_without_paths_are_rejected() {
        assert_eq!(
            load(&[("WRS_AUTH", "true")]).unwrap_err().var,
            "WRS_AUTH_TOKEN"
        );
        assert_eq!(
            load(&[("WRS_SSL", "true")]).unwrap_err().var,
            "WRS_SSL_CERT_PATH"
        );
    }

    #[test]
    fn cli_flags_override_the_environment() {
        let cli = Cli::parse_from(["wrs", "-p", "9000", "--auth", "-t", "secret"]);
        let c = Config::load(|k| (k == "WRS_API_PORT").then(|| "8000".into()), cli).unwrap();
        assert_eq!(c.api_port, 9000);
        assert!(c.auth);
        assert_eq!(c.auth_token, "secret");
    }

    #[test]
    fn auth_rules_parse_methods_wildcards_and_bare_paths() {
        let rules = auth_rules("POST:/channels *:/cluster DELETE:* /reset").unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[0].method.as_deref(), Some("POST"));
        assert!(rules[0].path.is_match("/channels/abc"));
        assert!(!rules[0].path.is_match("/x/channels"));
        assert!(rules[1].method.is_none());
        assert!(rules[2].path.is_match("/anything"));
        assert!(rules[3].method.is_none() && rules[3].path.is_match("/reset"));
    }

    #[test]
    fn failure_detection_defaults_to_5_s_down_and_60_s_removal_and_minus_one_never_removes() {
        let c = load(&[]).unwrap();
        assert_eq!(c.node_down_after, Duration::from_millis(5000));
        assert_eq!(c.node_remove_after, Some(Duration::from_millis(60_000)));
        let c = load(&[
            ("WRS_NODE_DOWN_AFTER", "1500"),
            ("WRS_NODE_REMOVE_AFTER", "-1"),
        ])
        .unwrap();
        assert_eq!(c.node_down_after, Duration::from_millis(1500));
        assert_eq!(c.node_remove_after, None);
        for (var, v) in [
            ("WRS_NODE_DOWN_AFTER", "100"),
            ("WRS_NODE_DOWN_AFTER", "soon"),
            ("WRS_NODE_REMOVE_AFTER", "-2"),
        ] {
            assert_eq!(load(&[(var, v)]).unwrap_err().var, var, "{var}={v}");
        }
    }

    #[test]
    fn the_thesis_spellings_work_and_a_conflict_names_both() {
        let c = load(&[("WRS_AUTH_RESSOURCES", "POST:/channels")]).expect("alias loads");
        assert_eq!(c.auth_rules.len(), 1);
        let c = load(&[("WRS_NODE_SNAPSHOT_LENGHT", "77")]).expect("alias loads");
        assert_eq!(c.node_snapshot_length, 77);
        // Both set to the same value is not a conflict.
        let same = [
            ("WRS_NODE_SNAPSHOT_LENGTH", "5"),
            ("WRS_NODE_SNAPSHOT_LENGHT", "5"),
        ];
        assert_eq!(load(&same).expect("same value").node_snapshot_length, 5);
        for (var, alias) in [
            ("WRS_AUTH_RESOURCES", "WRS_AUTH_RESSOURCES"),
            ("WRS_NODE_SNAPSHOT_LENGTH", "WRS_NODE_SNAPSHOT_LENGHT"),
        ] {
            let err = load(&[(var, "5"), (alias, "6")]).expect_err(var);
            let text = err.to_string();
            assert!(text.contains(var) && text.contains(alias), "{text}");
        }
    }

    #[test]
    fn cors_origins_default_to_any_and_reject_what_a_browser_never_sends() {
        assert_eq!(load(&[]).unwrap().cors_origins, CorsOrigins::Any);
        let c = load(&[(
            "WRS_CORS_ORIGINS",
            "http://localhost:3000 https://a.example null",
        )]);
        assert_eq!(
            c.unwrap().cors_origins,
            CorsOrigins::List(vec![
                "http://localhost:3000".into(),
                "https://a.example".into(),
                "null".into()
            ])
        );
        for bad in [
            "localhost:3000",
            "http://a.example/",
            "http://a.example/app",
        ] {
            let err = load(&[("WRS_CORS_ORIGINS", bad)]).expect_err(bad);
            assert_eq!(err.var, "WRS_CORS_ORIGINS");
        }
    }

    #[test]
    fn ws_scheme_follows_tls_or_the_proxy_flag() {
        assert_eq!(load(&[]).unwrap().ws_scheme(), "ws");
        let c = load(&[("WRS_DOMAIN", "::1"), ("WRS_PUBLIC_API_PORT", "443")]).unwrap();
        assert_eq!(c.public_ws_base(), "ws://[::1]:443");
        let c = load(&[("WRS_PUBLIC_URL", "wss://relay.example.org/")]).unwrap();
        assert_eq!(c.public_ws_base(), "wss://relay.example.org");
        for bad in [
            "https://relay.example.org",
            "wss://relay.example.org/app",
            "relay",
        ] {
            assert_eq!(
                load(&[("WRS_PUBLIC_URL", bad)]).unwrap_err().var,
                "WRS_PUBLIC_URL"
            );
        }
        assert_eq!(
            load(&[("WRS_PUBLIC_SSL", "true")]).unwrap().ws_scheme(),
            "wss"
        );
    }

    #[test]
    fn a_missing_readme_and_a_too_long_startup_delay_name_their_variable() {
        let err = load(&[("WRS_README_PATH", "/nonexistent/wrs-readme.md")]).unwrap_err();
        assert_eq!(err.var, "WRS_README_PATH");
        assert!(err.problem.contains("/nonexistent/wrs-readme.md"));
        let err = load(&[("WRS_MAX_STARTUP_DELAY", "3600001")]).unwrap_err();
        assert_eq!(err.var, "WRS_MAX_STARTUP_DELAY");
        let c = load(&[("WRS_MAX_STARTUP_DELAY", "250")]).unwrap();
        assert_eq!(c.max_startup_delay, Duration::from_millis(250));
    }

    #[test]
    fn connect_to_owner_is_off_by_default_parses_like_any_boolean_and_excludes_public_url() {
        assert!(!load(&[]).unwrap().connect_to_owner);
        for on in ["true", "1", "yes", "on", " TRUE "] {
            assert!(
                load(&[("WRS_CONNECT_TO_OWNER", on)])
                    .unwrap()
                    .connect_to_owner,
                "{on}"
            );
        }
        assert!(
            !load(&[("WRS_CONNECT_TO_OWNER", "false")])
                .unwrap()
                .connect_to_owner
        );
        let err = load(&[("WRS_CONNECT_TO_OWNER", "owner")]).unwrap_err();
        assert_eq!(err.var, "WRS_CONNECT_TO_OWNER");
        let err = load(&[
            ("WRS_CONNECT_TO_OWNER", "true"),
            ("WRS_PUBLIC_URL", "wss://relay.example.org"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "WRS_CONNECT_TO_OWNER");
        let text = err.to_string();
        assert!(
            text.contains("WRS_CONNECT_TO_OWNER") && text.contains("WRS_PUBLIC_URL"),
            "{text}"
        );
        // Off, WRS_PUBLIC_URL is as before.
        let c = load(&[
            ("WRS_CONNECT_TO_OWNER", "false"),
            ("WRS_PUBLIC_URL", "wss://relay.example.org"),
        ])
        .unwrap();
        assert_eq!(c.public_ws_base(), "wss://relay.example.org");
    }

    #[test]
    fn another_members_api_address_becomes_a_ws_base_with_this_nodes_scheme() {
        let c = load(&[]).unwrap();
        assert_eq!(
            c.ws_base_of("wrs-1.wrs-peers:8080"),
            "ws://wrs-1.wrs-peers:8080"
        );
        assert_eq!(c.ws_base_of("::1:18080"), "ws://[::1]:18080");
        assert_eq!(c.ws_base_of("[::1]:18080"), "ws://[::1]:18080");
        assert_eq!(c.ws_base_of("10.0.0.7:80"), "ws://10.0.0.7:80");
        let c = load(&[("WRS_PUBLIC_SSL", "true")]).unwrap();
        assert_eq!(
            c.ws_base_of("relay-2.example.org:443"),
            "wss://relay-2.example.org:443"
        );
    }
}
