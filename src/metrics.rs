//! Prometheus metrics: what an operator graphs (channels, clients, messages in/out/dropped by
//! pattern, slow consumers, HTTP requests by route and status, cluster role) and `/metrics`.

use std::sync::LazyLock;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<T: prometheus::core::Collector + Clone + 'static>(metric: T) -> T {
    // Names are static and unique, so registering cannot fail except by a programming error.
    REGISTRY
        .register(Box::new(metric.clone()))
        .expect("metric registered twice");
    metric
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn gauge(name: &str, help: &str) -> IntGauge {
    register(IntGauge::new(name, help).expect("valid metric"))
}

pub static CHANNELS: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("wrs_channels", "Channels that exist now"));
pub static CLIENTS: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("wrs_clients", "WebSocket clients connected now"));
pub static MESSAGES_IN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "wrs_messages_in_total",
        "Messages received from clients",
        &["pattern"],
    )
});
pub static MESSAGES_OUT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "wrs_messages_out_total",
        "Messages queued for delivery to clients",
        &["pattern"],
    )
});
pub static MESSAGES_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "wrs_messages_dropped_total",
        "Messages not delivered because the recipient was a slow consumer or gone",
        &["pattern"],
    )
});
pub static PEER_MESSAGES_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "wrs_peer_messages_rejected_total",
        "Raft messages from peers dropped before they reached raft, by reason",
        &["reason"],
    )
});
pub static SLOW_CONSUMERS: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new(
            "wrs_slow_consumer_disconnects_total",
            "Clients closed with 4008 because their send queue overflowed",
        )
        .expect("valid metric"),
    )
});
pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "wrs_http_requests_total",
        "HTTP requests by method, route pattern and status",
        &["method", "route", "status"],
    )
});
pub static CLUSTER_ROLE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new("wrs_cluster_role", "1 for this node's current Raft role"),
            &["role"],
        )
        .expect("valid metric"),
    )
});
/// Leader → follower heartbeat → response, the peer network's round trip as Raft sees it
/// (one series for all peers: peer ids change on every restart, labels must not).
pub static PEER_RTT: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(
            HistogramOpts::new(
                "wrs_peer_rtt_seconds",
                "Round trip of a Raft heartbeat from this leader to a follower and back",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        )
        .expect("valid metric"),
    )
});
fn counter(name: &str, help: &str) -> IntCounter {
    register(IntCounter::new(name, help).expect("valid metric"))
}

pub static CLUSTER_MEMBERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "wrs_cluster_members",
                "Members of the cluster by state (up, down) as this node applied them",
            ),
            &["state"],
        )
        .expect("valid metric"),
    )
});
pub static CLUSTER_FAILOVERS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "wrs_cluster_failovers_total",
        "Members marked down by the failure detector (their channels moved), as applied here",
    )
});
pub static CLUSTER_REMOVALS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "wrs_cluster_removals_total",
        "Members removed from the Raft configuration (left, removed by hand or for being down)",
    )
});
pub static CLUSTER_REJOINS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "wrs_cluster_rejoins_total",
        "Times this node found itself removed and rejoined as a new member",
    )
});
pub static RELAY_LOST: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "wrs_relay_records_lost_total",
        "Cross-node records (messages, deliveries, leaves) lost because a peer was unreachable",
    )
});
pub static RAFT_TERM: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("wrs_raft_term", "Current Raft term"));
pub static RAFT_COMMIT_INDEX: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("wrs_raft_commit_index", "Raft commit index"));
pub static RAFT_APPLIED_INDEX: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("wrs_raft_applied_index", "Raft applied index"));

/// Per-pattern counters resolved once per channel, so the hot path is one atomic add.
#[derive(Clone)]
pub struct PatternCounters {
    pub messages_in: IntCounter,
    pub messages_out: IntCounter,
    pub dropped: IntCounter,
}

impl PatternCounters {
    pub fn new(pattern: &str) -> PatternCounters {
        PatternCounters {
            messages_in: MESSAGES_IN.with_label_values(&[pattern]),
            messages_out: MESSAGES_OUT.with_label_values(&[pattern]),
            dropped: MESSAGES_DROPPED.with_label_values(&[pattern]),
        }
    }
}

/// Touches every metric so `/metrics` lists them all from the start.
pub fn init() {
    for m in [
        &*CHANNELS,
        &*CLIENTS,
        &*RAFT_TERM,
        &*RAFT_COMMIT_INDEX,
        &*RAFT_APPLIED_INDEX,
    ] {
        m.set(m.get());
    }
    SLOW_CONSUMERS.inc_by(0);
    for c in [
        &*CLUSTER_FAILOVERS,
        &*CLUSTER_REMOVALS,
        &*CLUSTER_REJOINS,
        &*RELAY_LOST,
    ] {
        c.inc_by(0);
    }
    for state in ["up", "down"] {
        CLUSTER_MEMBERS.with_label_values(&[state]).set(0);
    }
    LazyLock::force(&PEER_RTT);
    // The Raft node sets the real role on its first Ready.
    for role in ["leader", "follower", "candidate", "learner"] {
        CLUSTER_ROLE.with_label_values(&[role]).set(0);
    }
    for p in crate::model::Pattern::ALL {
        PatternCounters::new(p.as_str());
    }
}

pub async fn endpoint() -> HttpResponse {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&REGISTRY.gather(), &mut buf) {
        log::error!("metrics encoding failed: {e}");
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(buf)
}

/// Counts every HTTP request by its route pattern (not the raw path: ids would explode labels).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let method = method_label(req.method().as_str());
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    HTTP_REQUESTS
        .with_label_values(&[method, &route, status.as_str()])
        .inc();
    res
}

/// Method labels come from a closed set: a made-up method must not create a new series.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(super::method_label("GET"), "GET");
        assert_eq!(super::method_label("M1"), "other");
        assert_eq!(super::method_label("get"), "other");
    }
}
