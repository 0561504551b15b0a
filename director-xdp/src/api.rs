//! The director's HTTP API (docs/api.md), served by `director-xdp run`.
//!
//! The HTTP side here only moves requests: every call (reads included) is
//! sent to the daemon's event loop, the single owner of the config and the
//! data plane, which answers it in the daemon's event loop ([`answer`], through [`Director`]) between signals and
//! next-hop refreshes. Calls are therefore serialised: two drains at once
//! are two changes one after the other, each building on the table the
//! previous one left.
//!
//! A change is answered only once it is live and on disk: the new config
//! is built and checked whole (as if read from the file), applied to the
//! data plane (each table flips atomically), then written over the config
//! file (write, fsync, rename, fsync of the directory). A refused change
//! writes nothing; a change whose file write fails is rolled back in the
//! data plane. While no director program is attached to the interface
//! (the daemon's `watch` module), a change is refused with 503 before
//! anything is read or written, and `/healthz` answers 503 naming the
//! problem.
//!
//! The routes, the router and the OpenAPI document all come from
//! [`ROUTES`]. The one route that does not reach the event loop is the
//! status page (`GET /`, [`crate::status`]): static HTML that anyone may
//! load, whose own calls to the API are checked like any other.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, RawPathParamsRejection};
use axum::extract::{DefaultBodyLimit, OriginalUri, RawPathParams, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use proto::api::{self, StateAction};
use proto::config::{BackendConfig, Config, shorten, unusable_address};
use proto::de::{fields_of, missing_field, value_at};
use proto::table::{Backend, BackendState};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use serde_path_to_error::Segment;
use tokio::sync::{mpsc, oneshot};

use crate::change::{Change, Health, HealthVerdict, Kind, Refusal};
use crate::status::StatusPage;

/// What a route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// The HTML status page, served at the HTTP edge.
    StatusPage,
    Healthz,
    OpenApi,
    Metrics,
    Stats,
    Tables,
    Table,
    AddBackend,
    RemoveBackend,
    SetState(BackendState),
    SetHealth,
    HealthBatch,
    Preview,
    Director,
    /// Drain (true) or undrain the director.
    DrainDirector(bool),
}

/// One route: what the router serves and what the OpenAPI document says.
#[derive(Debug)]
pub(crate) struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub op: Op,
    pub id: &'static str,
    pub summary: &'static str,
    /// Needs the bearer token.
    pub mutation: bool,
    /// Schema of the request body (components/schemas), if any.
    pub request: Option<&'static str>,
    /// Schema of the success response (components/schemas).
    pub response: &'static str,
    /// Status of the success response.
    pub success: u16,
}

const fn route(
    method: &'static str,
    path: &'static str,
    op: Op,
    id: &'static str,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        op,
        id,
        summary,
        mutation: false,
        request: None,
        response: "Error",
        success: 200,
    }
}

const fn change(
    method: &'static str,
    path: &'static str,
    op: Op,
    id: &'static str,
    summary: &'static str,
    request: Option<&'static str>,
) -> Route {
    Route {
        mutation: true,
        request,
        response: "Change",
        ..route(method, path, op, id, summary)
    }
}

/// Every route of the API.
pub(crate) const ROUTES: &[Route] = &[
    Route {
        response: "StatusPage",
        ..route(
            "get",
            "/",
            Op::StatusPage,
            "statusPage",
            "The status page (HTML): tables, backends, traffic and BGP state, refreshed live; its data calls need the token where reads do",
        )
    },
    Route {
        response: "Healthz",
        ..route(
            "get",
            "/healthz",
            Op::Healthz,
            "healthz",
            "The director's program is attached to its interface (503 otherwise, naming the problem)",
        )
    },
    Route {
        response: "OpenApi",
        ..route(
            "get",
            "/v1/openapi.json",
            Op::OpenApi,
            "openapi",
            "This document",
        )
    },
    Route {
        response: "Metrics",
        ..route(
            "get",
            "/metrics",
            Op::Metrics,
            "metrics",
            "Prometheus text format: counters, rows, health, generation",
        )
    },
    Route {
        response: "Stats",
        ..route(
            "get",
            "/v1/stats",
            Op::Stats,
            "stats",
            "Director counters, per outcome and per bind",
        )
    },
    Route {
        response: "Tables",
        ..route(
            "get",
            "/v1/tables",
            Op::Tables,
            "listTables",
            "Every table: binds, backends, rows, content hash",
        )
    },
    Route {
        response: "Table",
        ..route(
            "get",
            "/v1/tables/{name}",
            Op::Table,
            "getTable",
            "One table: binds, backends, rows, content hash",
        )
    },
    Route {
        success: 201,
        ..change(
            "post",
            "/v1/tables/{name}/backends",
            Op::AddBackend,
            "addBackend",
            "Add a backend",
            Some("AddBackend"),
        )
    },
    change(
        "delete",
        "/v1/tables/{name}/backends/{ip}",
        Op::RemoveBackend,
        "removeBackend",
        "Remove a backend (refused unless inactive, or ?force=true)",
        None,
    ),
    change(
        "post",
        "/v1/tables/{name}/backends/{ip}/drain",
        Op::SetState(BackendState::Draining),
        "drainBackend",
        "Set a backend's state to draining",
        None,
    ),
    change(
        "post",
        "/v1/tables/{name}/backends/{ip}/fill",
        Op::SetState(BackendState::Filling),
        "fillBackend",
        "Set a backend's state to filling",
        None,
    ),
    change(
        "post",
        "/v1/tables/{name}/backends/{ip}/activate",
        Op::SetState(BackendState::Active),
        "activateBackend",
        "Set a backend's state to active",
        None,
    ),
    change(
        "post",
        "/v1/tables/{name}/backends/{ip}/deactivate",
        Op::SetState(BackendState::Inactive),
        "deactivateBackend",
        "Set a backend's state to inactive",
        None,
    ),
    change(
        "put",
        "/v1/tables/{name}/backends/{ip}/health",
        Op::SetHealth,
        "setHealth",
        "Set a backend's health verdict (kept in the state file, not the config)",
        Some("SetHealth"),
    ),
    Route {
        response: "HealthBatchAnswer",
        ..change(
            "put",
            "/v1/health",
            Op::HealthBatch,
            "setHealthBatch",
            "Set many backends' health verdicts, of any tables, as one change (the health checker's call)",
            Some("HealthBatch"),
        )
    },
    Route {
        mutation: false,
        request: Some("Proposal"),
        response: "Preview",
        ..route(
            "post",
            "/v1/tables/{name}/preview",
            Op::Preview,
            "preview",
            "The rows a change would move, without applying it",
        )
    },
    Route {
        response: "DirectorStatus",
        ..route(
            "get",
            "/v1/director",
            Op::Director,
            "getDirector",
            "The director in its fleet: attached, drained, VIP traffic, BGP announcements",
        )
    },
    Route {
        response: "DirectorStatus",
        ..change(
            "post",
            "/v1/director/drain",
            Op::DrainDirector(true),
            "drainDirector",
            "Withdraw every VIP (kept across restarts) and keep forwarding what still arrives",
            None,
        )
    },
    Route {
        response: "DirectorStatus",
        ..change(
            "post",
            "/v1/director/undrain",
            Op::DrainDirector(false),
            "undrainDirector",
            "Announce the VIPs again",
            None,
        )
    },
];

/// A request as the event loop receives it.
#[derive(Debug)]
pub(crate) struct Call {
    pub op: Op,
    pub table: Option<String>,
    pub ip: Option<String>,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub body: Bytes,
    pub reply: oneshot::Sender<Reply>,
}

/// An answer: status and a JSON or text body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: ReplyBody,
}

#[derive(Debug)]
pub(crate) enum ReplyBody {
    Json(Value),
    Text(String),
}

impl Reply {
    pub(crate) fn json(status: StatusCode, v: Value) -> Reply {
        Reply {
            status,
            body: ReplyBody::Json(v),
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut r = match self.body {
            ReplyBody::Json(v) => (
                self.status,
                [(header::CONTENT_TYPE, "application/json")],
                format!("{v:#}\n"),
            )
                .into_response(),
            ReplyBody::Text(t) => (
                self.status,
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                t,
            )
                .into_response(),
        };
        if unauthorized {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// A refused call: status, message, and the field and value at fault.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub field: Option<String>,
    pub value: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: None,
            value: None,
        }
    }

    /// Names the field and value at fault, both cut to what a message may
    /// repeat: a 20 MB value is not echoed back.
    pub(crate) fn at(mut self, field: &str, value: impl Into<Value>) -> ApiError {
        let (f, v) = Refusal::new(Kind::Invalid, "")
            .at(field, value)
            .field
            .unwrap_or_default();
        self.field = Some(f);
        self.value = Some(v);
        self
    }

    pub(crate) fn reply(self) -> Reply {
        let mut o = Map::new();
        o.insert("error".into(), Value::String(self.error));
        if let Some(f) = self.field {
            o.insert("field".into(), Value::String(f));
            o.insert("value".into(), self.value.unwrap_or(Value::Null));
        }
        Reply::json(self.status, Value::Object(o))
    }
}

/// A refusal of the daemon's, as HTTP: its kind gives the status.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let status = match r.kind {
            Kind::Invalid => StatusCode::BAD_REQUEST,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let (field, value) = match r.field {
            Some((f, v)) => (Some(f), Some(v)),
            None => (None, None),
        };
        ApiError {
            status,
            error: r.message,
            field,
            value,
        }
    }
}

/// What the HTTP front needs of the daemon, which owns the config, the
/// tables and the data plane and answers in its own terms (the API's
/// types, [`Refusal`]s); this module maps HTTP to it and back.
pub(crate) trait Director {
    /// The bearer token changes need, if any.
    fn token(&self) -> Option<&str>;
    /// Whether the API listens on a loopback address (reads need no token).
    fn api_is_loopback(&self) -> bool;
    /// Refuses changes while nothing is attached.
    fn refuse_unless_attached(&self) -> Result<(), Refusal>;
    /// `/healthz`: whether the program is attached, and the answer.
    fn healthz(&self) -> (bool, proto::api::Healthz);
    /// Prometheus text.
    fn metrics(&self) -> Result<String, Refusal>;
    /// `/v1/stats`.
    fn stats(&self) -> Result<proto::api::Stats, Refusal>;
    /// `/v1/tables`.
    fn tables(&self) -> Result<proto::api::Tables, Refusal>;
    /// One table.
    fn table(&self, ti: usize) -> Result<proto::api::Table, Refusal>;
    /// The live config (verdicts laid over the file's).
    fn config(&self) -> &Config;
    /// Configs applied since start.
    fn generation(&self) -> u64;
    /// Every table's content hash.
    fn table_hashes(&self) -> BTreeMap<String, Option<String>>;
    /// What `change` would do to table `ti`.
    fn preview(&self, ti: usize, change: &Change) -> Result<proto::api::Preview, Refusal>;
    /// Makes `change`; whether anything changed.
    fn change(&mut self, ti: usize, change: &Change) -> Result<bool, Refusal>;
    /// Sets health verdicts; whether any table changed.
    fn set_health(&mut self, verdicts: &[HealthVerdict]) -> Result<bool, Refusal>;
    /// `/v1/director`.
    fn director(&self) -> proto::api::DirectorStatus;
    /// Drains or undrains the director.
    fn set_drained(&mut self, drained: bool) -> Result<proto::api::DirectorStatus, Refusal>;
}

/// A health verdict: at least one of `healthy` and `reachable` (`field`
/// names the first where the body has several verdicts).
fn health(field: &str, healthy: Option<bool>, reachable: Option<bool>) -> Result<Health, ApiError> {
    if healthy.is_none() && reachable.is_none() {
        return Err(
            bad("missing field \"healthy\" or \"reachable\" (give one or both)")
                .at(field, Value::Null),
        );
    }
    Ok(Health { healthy, reachable })
}

/// A verdict's reason: at most 1024 bytes.
fn reason(field: &str, reason: Option<String>) -> Result<Option<String>, ApiError> {
    match reason {
        Some(r) if r.len() > 1024 => {
            Err(bad("expected a string of at most 1024 bytes").at(field, r))
        }
        r => Ok(r),
    }
}

fn bad(error: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, error)
}

/// The router: every route of [`ROUTES`] forwards to the event loop,
/// except the status page, answered here.
pub(crate) fn router(calls: mpsc::Sender<Call>) -> Router {
    let mut by_path: BTreeMap<&str, MethodRouter> = BTreeMap::new();
    let page = StatusPage::new();
    for r in ROUTES {
        let calls = calls.clone();
        let op = r.op;
        let handler = move |OriginalUri(uri): OriginalUri,
                            params: Result<RawPathParams, RawPathParamsRejection>,
                            RawQuery(query): RawQuery,
                            headers: HeaderMap,
                            body: Result<Bytes, BytesRejection>| async move {
            // The server (src/server.rs) has read the body within its
            // limits already; a path parameter that is not UTF-8 once
            // percent-decoded is refused here, in JSON like every refusal.
            let params = match params {
                Ok(p) => p,
                Err(e) => {
                    return bad(format!("the path is not valid: {}", e.body_text()))
                        .at("path", uri.path())
                        .reply();
                }
            };
            let body = match body {
                Ok(b) => b,
                Err(e) => {
                    return ApiError::new(e.status(), e.body_text())
                        .at("body", Value::Null)
                        .reply();
                }
            };
            forward(calls, op, params, query, headers, body).await
        };
        let filter = match r.method {
            "get" => MethodFilter::GET,
            "post" => MethodFilter::POST,
            "put" => MethodFilter::PUT,
            _ => MethodFilter::DELETE,
        };
        let m = by_path.remove(r.path).unwrap_or_default();
        let m = if op == Op::StatusPage {
            let page = page.clone();
            m.on(filter, move || std::future::ready(page.response()))
        } else {
            m.on(filter, handler)
        };
        by_path.insert(r.path, m);
    }
    let mut router = Router::new();
    for (path, m) in by_path {
        router = router.route(
            path,
            m.fallback(|| async {
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed on this path",
                )
                .reply()
            }),
        );
    }
    router
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such path (see /v1/openapi.json)").reply()
        })
        // The server limits bodies (director.api_max_body_bytes).
        .layer(DefaultBodyLimit::disable())
}

async fn forward(
    calls: mpsc::Sender<Call>,
    op: Op,
    params: RawPathParams,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let mut table = None;
    let mut ip = None;
    for (k, v) in &params {
        match k {
            "name" => table = Some(v.to_string()),
            "ip" => ip = Some(v.to_string()),
            _ => {}
        }
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let (tx, rx) = oneshot::channel();
    let call = Call {
        op,
        table,
        ip,
        query,
        authorization,
        body,
        reply: tx,
    };
    let gone = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the director is shutting down",
        )
        .reply()
    };
    if calls.send(call).await.is_err() {
        return gone();
    }
    rx.await.unwrap_or_else(|_| gone())
}

/// Checks the bearer token. `token` is the configured one (None: no
/// token file, the API is read-only).
pub(crate) fn authorize(
    token: Option<&str>,
    authorization: Option<&str>,
    mutation: bool,
    loopback: bool,
) -> Result<(), ApiError> {
    let Some(token) = token else {
        if mutation {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the API is read-only: director.api_token_file is not set",
            ));
        }
        return Ok(());
    };
    if !mutation && loopback {
        return Ok(());
    }
    // `Bearer <token>`; the scheme is case-insensitive (RFC 9110 11.1).
    let given = authorization.and_then(|h| {
        let (scheme, rest) = h.trim_start().split_once([' ', '\t'])?;
        scheme.eq_ignore_ascii_case("bearer").then_some(rest)
    });
    match given {
        None => Err(
            ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token")
                .at("Authorization", Value::Null),
        ),
        Some(g) if constant_time_eq(g.trim().as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(
            ApiError::new(StatusCode::UNAUTHORIZED, "wrong bearer token")
                .at("Authorization", "Bearer ..."),
        ),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The body as a JSON object, or 400.
fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("the request needs a JSON object body").at("body", ""));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body is not valid JSON: {e}")).at("body", Value::Null))?;
    match v {
        Value::Object(o) => Ok(o),
        other => Err(bad("the body must be a JSON object").at("body", other)),
    }
}

/// Refuses fields not in `known` (a typo must not be silently ignored).
fn only(o: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match o.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad(format!(
            "unknown field \"{}\" (known: {})",
            shorten(k),
            known.join(", ")
        ))
        .at(k, o[k].clone())),
        None => Ok(()),
    }
}

pub(crate) fn parse_ip(field: &str, s: &str) -> Result<IpAddr, ApiError> {
    s.parse()
        .map_err(|_| bad(format!("\"{}\" is not an IP address", shorten(s))).at(field, s))
}

/// The body's object read into `T` (a request type of [`proto::api`]),
/// fields outside `known` refused first (a typo must not be silently
/// ignored); a refusal names the field at fault (as `verdicts[2].ip`)
/// with the value given.
fn typed<T: DeserializeOwned>(o: Map<String, Value>, known: &[&str]) -> Result<T, ApiError> {
    only(&o, known)?;
    let v = Value::Object(o);
    serde_path_to_error::deserialize(&v).map_err(|e| shape_error(&v, &e))
}

/// A field missing or of the wrong type, in the words the API uses for
/// that field wherever it is (serde's words for the others).
fn shape_error(body: &Value, e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    if let Some(missing) = missing_field(e.inner()) {
        let field = match path.as_str() {
            "." => missing.clone(),
            p => format!("{p}.{missing}"),
        };
        return bad(format!("missing field \"{missing}\"")).at(&field, Value::Null);
    }
    let value = value_at(body, e.path()).cloned().unwrap_or(Value::Null);
    let leaf = match e.path().iter().next_back() {
        Some(Segment::Map { key }) => key.as_str(),
        _ => "",
    };
    let message = match (leaf, &value) {
        ("ip", Value::String(s)) => format!("\"{}\" is not an IP address", shorten(s)),
        ("ip", _) => "expected an IP address as a string".into(),
        ("state", _) => "not one of \"active\", \"filling\", \"draining\", \"inactive\"".into(),
        ("healthy" | "reachable", _) => "expected true or false".into(),
        ("healthchecks", _) => "expected an object".into(),
        ("reason", _) => "expected a string of at most 1024 bytes".into(),
        _ => e.inner().to_string(),
    };
    bad(message).at(&path, value)
}

/// `POST .../backends` body.
pub(crate) fn parse_add(body: &[u8]) -> Result<BackendConfig, ApiError> {
    backend_config(typed(object(body)?, fields_of::<api::AddBackend>())?)
}

/// The backend `add` adds, unless its address cannot be a backend.
fn backend_config(add: api::AddBackend) -> Result<BackendConfig, ApiError> {
    let addr = add.ip;
    if let Some(why) = unusable_address(addr) {
        return Err(
            bad(format!("{addr} is {why}: it cannot be a backend")).at("ip", addr.to_string())
        );
    }
    Ok(BackendConfig {
        backend: Backend {
            addr,
            state: add.state.unwrap_or(BackendState::Active),
            healthy: add.healthy.unwrap_or(true),
            reachable: add.reachable.unwrap_or(true),
        },
        healthchecks: add.healthchecks.map(Value::Object),
    })
}

/// `PUT .../health` body: the verdict and an optional reason.
pub(crate) fn parse_health(body: &[u8]) -> Result<(Health, Option<String>), ApiError> {
    let h: api::SetHealth = typed(object(body)?, fields_of::<api::SetHealth>())?;
    Ok((
        health("healthy", h.healthy, h.reachable)?,
        reason("reason", h.reason)?,
    ))
}

/// `POST .../preview` body: an [`api::Proposal`], read as serde reads
/// one (the `action` tag, then the action's struct from the other fields),
/// each step refused in its own words.
pub(crate) fn parse_proposal(body: &[u8]) -> Result<Change, ApiError> {
    let mut o = object(body)?;
    let action = match o.remove("action") {
        Some(Value::String(s)) => s,
        Some(v) => return Err(bad("expected a string").at("action", v)),
        None => return Err(bad("missing field \"action\"").at("action", Value::Null)),
    };
    let with_action = |fields: &[&'static str]| -> Vec<&'static str> {
        std::iter::once("action")
            .chain(fields.iter().copied())
            .collect()
    };
    let target = |o| -> Result<IpAddr, ApiError> {
        let t: api::Target = typed(o, &with_action(fields_of::<api::Target>()))?;
        Ok(t.ip)
    };
    if let Some(a) = StateAction::ALL.into_iter().find(|a| a.as_str() == action) {
        return Ok(Change::SetState {
            ip: target(o)?,
            state: a.state(),
        });
    }
    match action.as_str() {
        "add" => Ok(Change::Add(backend_config(typed(
            o,
            fields_of::<api::AddBackend>(),
        )?)?)),
        "remove" => Ok(Change::Remove {
            ip: target(o)?,
            force: true,
        }),
        "health" => {
            let h: api::ProposedHealth =
                typed(o, &with_action(fields_of::<api::ProposedHealth>()))?;
            Ok(Change::SetHealth {
                ip: h.ip,
                health: health("healthy", h.healthy, h.reachable)?,
            })
        }
        other => Err(bad(
            "not one of \"add\", \"remove\", \"drain\", \"fill\", \"activate\", \"deactivate\", \"health\"",
        )
        .at("action", other)),
    }
}

/// `?force=true|false`.
pub(crate) fn parse_force(query: Option<&str>) -> Result<bool, ApiError> {
    let mut force = false;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (k, v) {
            ("force", "true" | "1") => force = true,
            ("force", "false" | "0") => force = false,
            ("force", v) => return Err(bad("expected true or false").at("force", v)),
            (k, _) => {
                return Err(bad(format!("unknown query parameter \"{}\"", shorten(k))).at(k, v));
            }
        }
    }
    Ok(force)
}

/// The OpenAPI 3.1 document, from [`ROUTES`].
pub(crate) fn openapi() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut params = Vec::new();
        for p in ["name", "ip"] {
            if r.path.contains(&format!("{{{p}}}")) {
                params.push(json!({
                    "name": p, "in": "path", "required": true,
                    "schema": { "type": "string" },
                    "description": if p == "name" { "the table's name" } else { "the backend's address" },
                }));
            }
        }
        if r.op == Op::RemoveBackend {
            params.push(json!({
                "name": "force", "in": "query", "required": false,
                "schema": { "type": "boolean", "default": false },
                "description": "remove a backend that is not inactive",
            }));
        }
        let schema = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
        let error = json!({ "description": "refused", "content": { "application/json": { "schema": schema("ErrorBody") } } });
        let mut responses = Map::new();
        let content_type = match r.op {
            Op::Metrics => "application/openmetrics-text",
            Op::StatusPage => "text/html",
            _ => "application/json",
        };
        responses.insert(
            r.success.to_string(),
            json!({ "description": "success", "content": { content_type: { "schema": schema(r.response) } } }),
        );
        // 503: the connection caps (docs/api.md#limits) or a shutdown.
        let mut codes = vec!["500", "503"];
        if r.request.is_some() {
            codes.extend(["408", "413"]);
        }
        if r.path.contains("{name}") {
            codes.extend(["400", "404"]);
        }
        if r.mutation || r.op == Op::Preview {
            codes.extend(["400", "409"]);
        }
        if r.mutation {
            // 503: no program is attached (or the daemon is stopping).
            codes.extend(["401", "403", "503"]);
        }
        codes.sort_unstable();
        codes.dedup();
        for c in codes {
            responses.insert(c.to_string(), error.clone());
        }
        if r.op == Op::Healthz {
            responses.insert(
                "503".to_string(),
                json!({ "description": "no director program is attached to the interface", "content": { "application/json": { "schema": schema("Healthz") } } }),
            );
        }
        let mut op = json!({
            "operationId": r.id,
            "summary": r.summary,
            "parameters": params,
            "responses": responses,
        });
        if let Some(req) = r.request {
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema(req) } } });
        }
        if r.mutation {
            op["security"] = json!([{ "bearer": [] }]);
        }
        let entry = paths
            .entry(r.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "glb-rs director API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "docs/api.md. Mutations need `Authorization: Bearer <token>` (director.api_token_file); reads are open on a loopback address.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas(),
        },
    })
}

/// The request and answer schemas, generated from the API's types
/// (`proto::api`), which the daemon serialises and its clients read: the
/// document cannot drift from what is served.
fn schemas() -> Value {
    use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
    fn add<T: JsonSchema>(g: &mut SchemaGenerator) {
        g.subschema_for::<T>();
    }
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    add::<api::ErrorBody>(&mut g);
    add::<api::Healthz>(&mut g);
    add::<api::Tables>(&mut g);
    add::<api::Table>(&mut g);
    add::<api::Change>(&mut g);
    add::<api::AddBackend>(&mut g);
    add::<api::SetHealth>(&mut g);
    add::<api::HealthBatch>(&mut g);
    add::<api::HealthBatchAnswer>(&mut g);
    add::<api::Proposal>(&mut g);
    add::<api::Preview>(&mut g);
    add::<api::Stats>(&mut g);
    add::<api::DirectorStatus>(&mut g);
    let mut defs = g.definitions().clone();
    defs.insert(
        "OpenApi".into(),
        json!({ "type": "object", "description": "this document" }),
    );
    defs.insert(
        "StatusPage".into(),
        json!({ "type": "string", "description": "the status page, HTML (docs/api.md#the-status-page)" }),
    );
    defs.insert(
        "Metrics".into(),
        json!({ "type": "string", "description": "OpenMetrics text format 1.0" }),
    );
    Value::Object(defs)
}

/// Answers one call; runs on the event loop, which owns `daemon`.
pub(crate) fn answer(daemon: &mut impl Director, call: &Call) -> Reply {
    let route = ROUTES.iter().find(|r| r.op == call.op);
    let mutation = route.is_some_and(|r| r.mutation);
    if let Err(e) = authorize(
        daemon.token(),
        call.authorization.as_deref(),
        mutation,
        daemon.api_is_loopback(),
    ) {
        return e.reply();
    }
    // Nothing would carry a change while the program is not attached, and
    // the client must not believe it live: refused before anything is read.
    // A drain is no table change, and a detached director is one to drain.
    if mutation
        && !matches!(call.op, Op::DrainDirector(_))
        && let Err(e) = daemon.refuse_unless_attached()
    {
        return ApiError::from(e).reply();
    }
    let result = match call.op {
        Op::StatusPage => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the status page is served by the HTTP front, not the event loop",
        )),
        Op::Healthz => {
            let (attached, h) = daemon.healthz();
            let status = if attached {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Ok((status, value(h)))
        }
        Op::OpenApi => Ok((StatusCode::OK, openapi())),
        Op::Metrics => {
            return match daemon.metrics() {
                Ok(text) => Reply {
                    status: StatusCode::OK,
                    body: ReplyBody::Text(text),
                },
                Err(e) => ApiError::from(e).reply(),
            };
        }
        Op::Stats => daemon
            .stats()
            .map(|v| (StatusCode::OK, value(v)))
            .map_err(ApiError::from),
        Op::Tables => daemon
            .tables()
            .map(|v| (StatusCode::OK, value(v)))
            .map_err(ApiError::from),
        Op::Table => table_index(daemon, call)
            .and_then(|ti| daemon.table(ti).map(value).map_err(ApiError::from))
            .map(|v| (StatusCode::OK, v)),
        Op::Preview => table_index(daemon, call).and_then(|ti| {
            let change = parse_proposal(&call.body)?;
            daemon
                .preview(ti, &change)
                .map(|v| (StatusCode::OK, value(v)))
                .map_err(ApiError::from)
        }),
        Op::AddBackend | Op::RemoveBackend | Op::SetState(_) | Op::SetHealth => {
            mutate(daemon, call, route.map_or(200, |r| r.success))
        }
        Op::HealthBatch => health_batch(daemon, &call.body),
        Op::Director => Ok((StatusCode::OK, value(daemon.director()))),
        Op::DrainDirector(drained) => daemon
            .set_drained(drained)
            .map(|v| (StatusCode::OK, value(v)))
            .map_err(ApiError::from),
    };
    match result {
        Ok((status, v)) => Reply::json(status, v),
        Err(e) => e.reply(),
    }
}

fn table_index(daemon: &impl Director, call: &Call) -> Result<usize, ApiError> {
    let name = call.table.as_deref().unwrap_or_default();
    daemon
        .config()
        .tables
        .iter()
        .position(|t| t.name == name)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no table \"{}\"", shorten(name)),
            )
            .at("table", name)
        })
}

/// `PUT /v1/health`: the verdicts of the tables' backends applied as one
/// change; those naming a table or backend this director does not have
/// are reported, not refused (a fleet's directors may differ for a moment).
fn health_batch(daemon: &mut impl Director, body: &[u8]) -> Result<(StatusCode, Value), ApiError> {
    let batch: api::HealthBatch = typed(object(body)?, fields_of::<api::HealthBatch>())?;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, v) in batch.verdicts.iter().enumerate() {
        let at = |f: &str| format!("verdicts[{i}].{f}");
        let health = health(&at("healthy"), v.healthy, v.reachable)?;
        let reason = reason(&at("reason"), v.reason.clone())?;
        if !seen.insert((v.table.clone(), v.ip)) {
            return Err(bad(format!(
                "backend {} of table \"{}\" has two verdicts",
                v.ip,
                shorten(&v.table)
            ))
            .at(&at("ip"), v.ip.to_string()));
        }
        let ti =
            daemon.config().tables.iter().position(|t| {
                t.name == v.table && t.backends.iter().any(|b| b.backend.addr == v.ip)
            });
        match ti {
            Some(table) => known.push(HealthVerdict {
                table,
                ip: v.ip,
                health,
                reason,
            }),
            None => unknown.push(proto::api::TableBackend {
                table: v.table.clone(),
                ip: v.ip,
            }),
        }
    }
    let changed = daemon.set_health(&known)?;
    let answer = proto::api::HealthBatchAnswer {
        changed,
        generation: daemon.generation(),
        unknown,
        hashes: daemon.table_hashes(),
    };
    Ok((StatusCode::OK, value(answer)))
}

fn mutate(
    daemon: &mut impl Director,
    call: &Call,
    success: u16,
) -> Result<(StatusCode, Value), ApiError> {
    let ti = table_index(daemon, call)?;
    let ip = || parse_ip("ip", call.ip.as_deref().unwrap_or_default());
    if call.op == Op::SetHealth {
        let ip = ip()?;
        let (health, reason) = parse_health(&call.body)?;
        let t = &daemon.config().tables[ti];
        if !t.backends.iter().any(|b| b.backend.addr == ip) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("table \"{}\" has no backend {ip}", t.name),
            )
            .at("ip", ip.to_string()));
        }
        let warnings = warnings(daemon, ti, &Change::SetHealth { ip, health })?;
        let changed = daemon.set_health(&[HealthVerdict {
            table: ti,
            ip,
            health,
            reason,
        }])?;
        return Ok((
            StatusCode::OK,
            change_answer(daemon, ti, changed, warnings)?,
        ));
    }
    let change = match call.op {
        Op::AddBackend => Change::Add(parse_add(&call.body)?),
        Op::RemoveBackend => Change::Remove {
            ip: ip()?,
            force: parse_force(call.query.as_deref())?,
        },
        Op::SetState(state) => Change::SetState { ip: ip()?, state },
        op => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{op:?} is not a change of one backend"),
            ));
        }
    };
    let warnings = warnings(daemon, ti, &change)?;
    let changed = daemon.change(ti, &change)?;
    let status = if changed {
        StatusCode::from_u16(success).unwrap_or(StatusCode::OK)
    } else {
        StatusCode::OK
    };
    Ok((status, change_answer(daemon, ti, changed, warnings)?))
}

/// What the answer to `change` must warn of: in an `ipip` table, the flows
/// it moves (its preview's warnings, taken before it is made). A change
/// the preview refuses is refused the same way by the change itself.
fn warnings(daemon: &impl Director, ti: usize, change: &Change) -> Result<Vec<String>, ApiError> {
    if daemon.config().tables[ti].encap != proto::Encap::Ipip {
        return Ok(Vec::new());
    }
    Ok(daemon.preview(ti, change)?.diff.warnings)
}

/// The answer to a change of table `ti`.
fn change_answer(
    daemon: &impl Director,
    ti: usize,
    changed: bool,
    warnings: Vec<String>,
) -> Result<Value, ApiError> {
    Ok(value(proto::api::Change {
        changed,
        generation: daemon.generation(),
        table: daemon.table(ti)?,
        warnings,
    }))
}

/// An answer's JSON: the API's types serialise to JSON objects, always.
fn value(t: impl serde::Serialize) -> Value {
    serde_json::to_value(t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_need_the_token_and_reads_are_open_on_loopback() {
        assert!(authorize(Some("s3cret"), None, false, true).is_ok());
        let e = authorize(Some("s3cret"), None, true, true).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let e = authorize(Some("s3cret"), Some("Bearer nope"), true, true).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(authorize(Some("s3cret"), Some("Bearer s3cret"), true, true).is_ok());
        for scheme in ["bearer", "BEARER", "beaRer"] {
            let h = format!("{scheme} s3cret");
            assert!(
                authorize(Some("s3cret"), Some(&h), true, true).is_ok(),
                "{h}"
            );
        }
        assert!(authorize(Some("s3cret"), Some("Bearer   s3cret"), true, true).is_ok());
        for h in ["Basic s3cret", "Bearers3cret", "s3cret", "Bearer"] {
            let e = authorize(Some("s3cret"), Some(h), true, true).unwrap_err();
            assert_eq!(e.status, StatusCode::UNAUTHORIZED, "{h}");
        }
        let e = authorize(Some("s3cret"), None, false, false).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED, "reads off loopback");
        let e = authorize(None, Some("Bearer x"), true, true).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN, "no token file: read-only");
    }

    #[test]
    fn bodies_are_checked_field_by_field() {
        let e = parse_add(br#"{"ip":"198.51.100.9","stat":"active"}"#).unwrap_err();
        assert_eq!(
            (e.field.as_deref(), e.value),
            (Some("stat"), Some(json!("active")))
        );
        let e = parse_add(br#"{"ip":"198.51.100.300"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ip"));
        let e = parse_add(br#"{"ip":"198.51.100.9","state":"drained"}"#).unwrap_err();
        assert_eq!(
            (e.field.as_deref(), e.value),
            (Some("state"), Some(json!("drained")))
        );
        let e = parse_health(br#"{"healthy":"yes"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("healthy"));
        let e = parse_health(b"{").unwrap_err();
        assert_eq!(
            (e.status, e.field.as_deref()),
            (StatusCode::BAD_REQUEST, Some("body"))
        );
        assert_eq!(
            parse_health(br#"{"healthy":false,"reason":"http 503"}"#).unwrap(),
            (
                Health {
                    healthy: Some(false),
                    reachable: None
                },
                Some("http 503".to_string())
            )
        );
        assert_eq!(
            parse_health(br#"{"reachable":false}"#).unwrap().0,
            Health {
                healthy: None,
                reachable: Some(false)
            }
        );
        let e = parse_health(br#"{"reason":"x"}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse_health(br#"{"reachable":1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("reachable"));
        assert!(matches!(
            parse_proposal(br#"{"action":"drain","ip":"198.51.100.9"}"#).unwrap(),
            Change::SetState {
                state: BackendState::Draining,
                ..
            }
        ));
        assert!(parse_force(Some("force=true")).unwrap());
        assert_eq!(
            parse_force(Some("force=yes")).unwrap_err().field.as_deref(),
            Some("force")
        );
    }

    /// Every refusal of a body: the message, the field and the value.
    #[test]
    fn body_refusals_name_the_field_and_value() {
        let long = "7".repeat(100);
        let cut = format!("{}...", "7".repeat(57));
        let not_an_ip = format!("\"{cut}\" is not an IP address");
        let add = |b: &str| parse_add(b.as_bytes()).map(|_| ());
        let health = |b: &str| parse_health(b.as_bytes()).map(|_| ());
        let preview = |b: &str| parse_proposal(b.as_bytes()).map(|_| ());
        let cases: Vec<(Result<(), ApiError>, &str, &str, Value)> = vec![
            (
                add(""),
                "the request needs a JSON object body",
                "body",
                json!(""),
            ),
            (
                add("[1]"),
                "the body must be a JSON object",
                "body",
                json!([1]),
            ),
            (
                add(r#"{"ip":"198.51.100.9","stat":"active"}"#),
                "unknown field \"stat\" (known: ip, state, healthy, reachable, healthchecks)",
                "stat",
                json!("active"),
            ),
            (add("{}"), "missing field \"ip\"", "ip", Value::Null),
            (
                add(r#"{"ip":7}"#),
                "expected an IP address as a string",
                "ip",
                json!(7),
            ),
            (
                add(r#"{"ip":null}"#),
                "expected an IP address as a string",
                "ip",
                Value::Null,
            ),
            (
                add(&format!(r#"{{"ip":"{long}"}}"#)),
                &not_an_ip,
                "ip",
                json!(cut),
            ),
            (
                add(r#"{"ip":"224.0.0.1"}"#),
                "224.0.0.1 is a multicast address: it cannot be a backend",
                "ip",
                json!("224.0.0.1"),
            ),
            (
                add(r#"{"ip":"198.51.100.9","state":"drained"}"#),
                "not one of \"active\", \"filling\", \"draining\", \"inactive\"",
                "state",
                json!("drained"),
            ),
            (
                add(r#"{"ip":"198.51.100.9","state":null}"#),
                "not one of \"active\", \"filling\", \"draining\", \"inactive\"",
                "state",
                Value::Null,
            ),
            (
                add(r#"{"ip":"198.51.100.9","healthy":null}"#),
                "expected true or false",
                "healthy",
                Value::Null,
            ),
            (
                add(r#"{"ip":"198.51.100.9","reachable":"no"}"#),
                "expected true or false",
                "reachable",
                json!("no"),
            ),
            (
                add(r#"{"ip":"198.51.100.9","healthchecks":[80]}"#),
                "expected an object",
                "healthchecks",
                json!([80]),
            ),
            (
                add(r#"{"ip":"198.51.100.9","healthchecks":null}"#),
                "expected an object",
                "healthchecks",
                Value::Null,
            ),
            (
                health(r#"{"healthy":true,"why":"x"}"#),
                "unknown field \"why\" (known: healthy, reachable, reason)",
                "why",
                json!("x"),
            ),
            (
                health(r#"{"reason":"x"}"#),
                "missing field \"healthy\" or \"reachable\" (give one or both)",
                "healthy",
                Value::Null,
            ),
            (
                health(r#"{"healthy":1}"#),
                "expected true or false",
                "healthy",
                json!(1),
            ),
            (
                health(r#"{"healthy":false,"reason":5}"#),
                "expected a string of at most 1024 bytes",
                "reason",
                json!(5),
            ),
            (
                health(&format!(
                    r#"{{"healthy":false,"reason":"{}"}}"#,
                    "r".repeat(1025)
                )),
                "expected a string of at most 1024 bytes",
                "reason",
                json!(format!("{}...", "r".repeat(57))),
            ),
            (
                preview("{}"),
                "missing field \"action\"",
                "action",
                Value::Null,
            ),
            (
                preview(r#"{"action":1}"#),
                "expected a string",
                "action",
                json!(1),
            ),
            (
                preview(r#"{"action":"explode","ip":"198.51.100.9"}"#),
                "not one of \"add\", \"remove\", \"drain\", \"fill\", \"activate\", \"deactivate\", \"health\"",
                "action",
                json!("explode"),
            ),
            (
                preview(r#"{"action":"drain","ip":"198.51.100.9","healthy":true}"#),
                "unknown field \"healthy\" (known: action, ip)",
                "healthy",
                json!(true),
            ),
            (
                preview(r#"{"action":"remove"}"#),
                "missing field \"ip\"",
                "ip",
                Value::Null,
            ),
            (
                preview(r#"{"action":"fill","ip":"198.51.100.300"}"#),
                "\"198.51.100.300\" is not an IP address",
                "ip",
                json!("198.51.100.300"),
            ),
            (
                preview(r#"{"action":"health","ip":"198.51.100.9","reason":"x"}"#),
                "unknown field \"reason\" (known: action, ip, healthy, reachable)",
                "reason",
                json!("x"),
            ),
            (
                preview(r#"{"action":"health","ip":"198.51.100.9"}"#),
                "missing field \"healthy\" or \"reachable\" (give one or both)",
                "healthy",
                Value::Null,
            ),
            (
                preview(r#"{"action":"add","ip":"198.51.100.9","force":true}"#),
                "unknown field \"force\" (known: ip, state, healthy, reachable, healthchecks)",
                "force",
                json!(true),
            ),
            (
                preview(r#"{"action":"add","ip":"198.51.100.9","state":"drained"}"#),
                "not one of \"active\", \"filling\", \"draining\", \"inactive\"",
                "state",
                json!("drained"),
            ),
        ];
        for (result, error, field, value) in cases {
            let e = result.expect_err(error);
            assert_eq!(
                (e.status, e.error.as_str(), e.field.as_deref(), e.value),
                (StatusCode::BAD_REQUEST, error, Some(field), Some(value))
            );
        }
        assert!(matches!(
            parse_proposal(br#"{"action":"add","ip":"198.51.100.9","healthchecks":{"http":80}}"#)
                .unwrap(),
            Change::Add(b) if b.healthchecks == Some(json!({"http": 80}))
        ));
        assert!(matches!(
            parse_proposal(br#"{"action":"health","ip":"198.51.100.9","reachable":false}"#)
                .unwrap(),
            Change::SetHealth {
                health: Health {
                    healthy: None,
                    reachable: Some(false)
                },
                ..
            }
        ));
        assert!(matches!(
            parse_proposal(br#"{"action":"remove","ip":"198.51.100.9"}"#).unwrap(),
            Change::Remove { force: true, .. }
        ));
        assert_eq!(
            parse_health(br#"{"healthy":true,"reason":null}"#)
                .unwrap()
                .1,
            None,
            "a null reason is none"
        );
    }

    #[test]
    fn openapi_lists_every_route() {
        let doc = openapi();
        for r in ROUTES {
            assert_eq!(
                doc["paths"][r.path][r.method]["operationId"], r.id,
                "{} {}",
                r.method, r.path
            );
            if let Some(req) = r.request {
                assert!(doc["components"]["schemas"][req].is_object(), "{req}");
            }
            assert!(
                doc["components"]["schemas"][r.response].is_object(),
                "{}",
                r.response
            );
        }
        let page = &doc["paths"]["/"]["get"]["responses"]["200"]["content"];
        assert!(page["text/html"].is_object(), "{page}");
    }
}
