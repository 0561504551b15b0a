//! The checker's own HTTP endpoints: `GET /health` (every backend's last
//! results, reasons and timings, and every director's pushes, as JSON) and
//! `GET /metrics` (Prometheus text).

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::engine::{BackendReport, Engine};
use crate::push::DirectorStats;

/// `GET /health`.
pub const HEALTH: &str = "/health";
/// `GET /metrics`.
pub const METRICS: &str = "/metrics";

/// What the endpoints read.
#[derive(Clone, Debug)]
pub struct Shared {
    /// The checks and verdicts.
    pub engine: Arc<Mutex<Engine>>,
    /// The directors' pushes.
    pub directors: Arc<Mutex<Vec<DirectorStats>>>,
}

/// The body of `GET /health`.
#[derive(Debug, Serialize)]
pub struct HealthReport {
    /// Whether the checker suspects its own network (verdicts kept).
    pub self_suspicion: bool,
    /// Every backend of every table with checks, with its checks.
    pub backends: Vec<BackendReport>,
    /// Every director and its pushes.
    pub directors: Vec<DirectorStats>,
}

/// The router.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route(HEALTH, get(health))
        .route(METRICS, get(metrics))
        .with_state(shared)
}

fn unavailable() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "state lock poisoned\n").into_response()
}

async fn health(State(s): State<Shared>) -> Response {
    let (Ok(e), Ok(d)) = (s.engine.lock(), s.directors.lock()) else {
        return unavailable();
    };
    Json(HealthReport {
        self_suspicion: e.suspicious(),
        backends: e.backends(),
        directors: d.clone(),
    })
    .into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    let (Ok(e), Ok(d)) = (s.engine.lock(), s.directors.lock()) else {
        return unavailable();
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&e, &d),
    )
        .into_response()
}
