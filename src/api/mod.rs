//! The actix-web application: shared state, every route and its `/channel` alias, JSON 404 /
//! 405 fallbacks, the auth middleware, and binding with or without TLS (OpenSSL).

pub mod auth;
pub mod channels;
pub mod cluster;
pub mod connect;
pub mod cors;
pub mod messages;
pub mod pages;
pub mod path;
pub mod spec;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actix::Addr;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod};

use crate::actors::registry::Registry;
use crate::actors::session::SessionLimits;
use crate::cluster::node::RaftNode;
use crate::cluster::relay::Relay;
use crate::config::{Config, Tls};
use crate::error::ApiError;

pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Addr<Registry>,
    pub cluster: Addr<RaftNode>,
    pub relay: Arc<Relay>,
    pub auth: Option<auth::AuthPolicy>,
    pub session_limits: SessionLimits,
    pub shutting_down: Arc<AtomicBool>,
    /// `/readme`, rendered once at start.
    pub readme_html: bytes::Bytes,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        registry: Addr<Registry>,
        cluster: Addr<RaftNode>,
        relay: Arc<Relay>,
    ) -> AppState {
        AppState {
            auth: config.auth.then(|| auth::AuthPolicy {
                token: config.auth_token.clone(),
                rules: config.auth_rules.clone(),
            }),
            session_limits: SessionLimits {
                max_message_size: config.max_message_size,
                ping_interval: config.ping_interval,
                ping_timeout: config.ping_timeout,
            },
            readme_html: pages::render_readme(config.readme.as_ref()).into(),
            config,
            registry,
            cluster,
            relay,
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("{} {}", req.method(), req.path())).error_response()
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed(req.method().to_string()).error_response()
}

/// A GET-only resource; other methods get a JSON 405.
fn get_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path.to_owned())
        .route(web::get().to(handler))
        .default_service(web::to(method_not_allowed))
}

/// Registers every route; `/channels` routes once per spelling (plural and singular alias).
fn routes(cfg: &mut web::ServiceConfig, browser_only: bool) {
    for base in ["/channels", "/channel"] {
        cfg.service(
            web::resource(base)
                .route(web::get().to(channels::list))
                .route(web::post().to(channels::create))
                .default_service(web::to(method_not_allowed)),
        );
        if browser_only {
            cfg.service(
                web::resource(format!("{base}/create"))
                    .route(web::get().to(channels::create_from_query))
                    .default_service(web::to(method_not_allowed)),
            );
            cfg.service(
                web::resource(format!("{base}/{{id}}/delete"))
                    .route(web::get().to(channels::delete))
                    .default_service(web::to(method_not_allowed)),
            );
        }
        cfg.service(
            web::resource(format!("{base}/{{id}}"))
                .route(web::get().to(channels::get))
                .route(web::delete().to(channels::delete))
                .default_service(web::to(method_not_allowed)),
        );
        cfg.service(
            web::resource(format!("{base}/{{id}}/connect"))
                .route(web::get().to(connect::connect))
                .default_service(web::to(method_not_allowed)),
        );
        cfg.service(
            web::resource(format!("{base}/{{id}}/messages"))
                .route(web::post().to(messages::publish))
                .default_service(web::to(method_not_allowed)),
        );
        cfg.service(
            web::resource(format!("{base}/{{id}}/clients"))
                .route(web::get().to(messages::clients))
                .default_service(web::to(method_not_allowed)),
        );
    }
    cfg.service(get_only("/", pages::index))
        .service(get_only("/readme", pages::readme))
        .service(get_only("/client", pages::client))
        .service(get_only("/docs", pages::docs))
        .service(get_only("/openapi.json", pages::openapi))
        .service(
            web::resource("/reset")
                .route(web::delete().to(channels::reset))
                .default_service(web::to(method_not_allowed)),
        )
        .service(get_only("/cluster", cluster::view))
        .service(
            web::resource("/cluster/join/{address}")
                .route(web::post().to(cluster::join))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/cluster/{nodeId}")
                .route(web::delete().to(cluster::remove))
                .default_service(web::to(method_not_allowed)),
        )
        .service(get_only("/metrics", crate::metrics::endpoint))
        .service(get_only("/healthz", cluster::healthz))
        .service(get_only("/readyz", cluster::readyz));
}

fn tls_acceptor(tls: &Tls) -> Result<SslAcceptorBuilder, String> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())
        .map_err(|e| format!("OpenSSL: {e}"))?;
    builder
        .set_private_key_file(&tls.key, SslFiletype::PEM)
        .map_err(|e| format!("WRS_SSL_KEY_PATH {}: {e}", tls.key.display()))?;
    builder
        .set_certificate_chain_file(&tls.cert)
        .map_err(|e| format!("WRS_SSL_CERT_PATH {}: {e}", tls.cert.display()))?;
    builder
        .check_private_key()
        .map_err(|e| format!("WRS_SSL_KEY_PATH does not match WRS_SSL_CERT_PATH: {e}"))?;
    Ok(builder)
}

/// Binds the API (TLS if configured) and returns the running server.
pub fn serve(state: web::Data<AppState>) -> Result<Server, String> {
    let config = Arc::clone(&state.config);
    let browser_only = config.browser_only;
    let config_cors = config.cors_origins.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(auth::middleware))
            // Outside auth, so a 401 carries CORS headers and preflights need no token.
            .wrap(cors::layer(&config_cors))
            .wrap(from_fn(cors::answers))
            .wrap(from_fn(crate::metrics::middleware))
            .configure(|cfg| routes(cfg, browser_only))
            .default_service(web::to(not_found))
    })
    .workers(config.workers)
    // actix-web leaves Nagle on; with it small frames stall for up to 40 ms (docs/architecture.md).
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(config.shutdown_timeout.as_secs().max(1));
    let addr = (config.bind.as_str(), config.api_port);
    let server = match &config.tls {
        Some(tls) => server.bind_openssl(addr, tls_acceptor(tls)?),
        None => server.bind(addr),
    }
    .map_err(|e| {
        format!(
            "WRS_API_PORT: cannot listen on {}:{}: {e}",
            config.bind, config.api_port
        )
    })?;
    Ok(server.run())
}
