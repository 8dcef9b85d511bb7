//! REST handlers for `/cluster` (view, join, remove) and the health probes.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::error::ApiError;

pub async fn view(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "data": state.node.view() }))
}

pub async fn join(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let address = req.match_info().get("address").unwrap_or_default();
    Err(ApiError::ClusterUnavailable(format!(
        "This node runs standalone; joining {address:?} needs the clustered build"
    )))
}

pub async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = req.match_info().get("nodeId").unwrap_or_default();
    if id == state.node.id.to_string() {
        return Err(ApiError::ClusterUnavailable(
            "A standalone node cannot remove itself; stop it instead".into(),
        ));
    }
    Err(ApiError::NodeNotFound(id.to_owned()))
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state
        .shutting_down
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        HttpResponse::ServiceUnavailable()
            .json(json!({ "message": "The server is shutting down", "error": "shutting_down" }))
    } else {
        HttpResponse::Ok().json(json!({ "status": "ok" }))
    }
}
