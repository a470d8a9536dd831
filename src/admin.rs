//! The admin HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/status`.
//!
//! Bound to localhost by default (`admin.listen`), optionally behind a bearer token
//! (`admin.token`). It serves operators, never clients: nothing here touches a session.
//!
//! - `/metrics`: the Prometheus text exposition ([`crate::metrics`]).
//! - `/healthz`: the process is up and serving (always 200 while it runs).
//! - `/readyz`: 200 when the configuration is loaded and the upstream accepts TCP connections
//!   within `upstream.connect_timeout_ms`; 503 with the reason otherwise (what a load balancer
//!   or Kubernetes readiness probe wants); 503 as soon as a shutdown has begun.
//! - `/status`: JSON — sessions by transaction state, and every DDL statement running or
//!   queued under the lock guard, with its blockers; the lock monitor's last sample.
//! - `POST /reload`: reload the configuration (as SIGHUP does); a bad one is rejected with the
//!   reason and the running one stays in force.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::state::{DdlActivity, Shared};

/// Binds the admin listener and serves it until the process ends.
pub async fn start(
    shared: Arc<Shared>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(shared.config.admin.listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/reload", axum::routing::post(reload))
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .with_state(shared);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    });
    tracing::info!(listen = %addr, "admin endpoint listening");
    Ok((addr, task))
}

/// `Authorization: Bearer <admin.token>` when a token is configured.
async fn auth(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let token = &shared.config.admin.token.0;
    if !token.is_empty() {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "admin token required\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let slots = &shared.slots;
    shared
        .metrics
        .set_slots(slots.unauthenticated_in_use(), slots.clients_in_use());
    let body = shared.metrics.render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// `POST /reload`: like SIGHUP; answers what happened.
async fn reload(State(shared): State<Arc<Shared>>) -> Response {
    match shared.reload_from_source() {
        Ok(restart) => axum::Json(serde_json::json!({
            "reloaded": true,
            "generation": shared.live.load().generation,
            "needs_restart": restart,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "reloaded": false, "error": e })),
        )
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    // Draining: take this instance out of rotation while its sessions finish.
    if shared.shutdown.phase() != crate::shutdown::Phase::Running {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let address = shared.config.upstream.address.clone();
    let timeout = shared.config.upstream.connect_timeout_ms;
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("upstream {address} unreachable: {e}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "upstream {address} did not answer within {} ms\n",
                timeout.as_millis()
            ),
        )
            .into_response(),
    }
}

#[derive(Serialize)]
struct Status {
    version: &'static str,
    upstream: String,
    sessions: Sessions,
    ddl: Vec<DdlStatus>,
    lock_monitor: crate::state::MonitorStatus,
}

#[derive(Serialize)]
struct Sessions {
    active: u64,
    accepted: u64,
    idle: i64,
    in_transaction: i64,
    failed: i64,
}

#[derive(Serialize)]
struct DdlStatus {
    backend_pid: u32,
    #[serde(flatten)]
    activity: DdlActivity,
    seconds: f64,
}

async fn status(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let by_state = shared.metrics.sessions_by_state();
    let mut ddl: Vec<DdlStatus> = shared
        .ddl_activity
        .iter()
        .map(|e| DdlStatus {
            backend_pid: *e.key(),
            seconds: e.value().since.elapsed().as_secs_f64(),
            activity: e.value().clone(),
        })
        .collect();
    ddl.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    axum::Json(Status {
        version: env!("CARGO_PKG_VERSION"),
        upstream: shared.config.upstream.address.clone(),
        sessions: Sessions {
            active: shared.metrics.value("ddlgate_connections_active", &[]) as u64,
            accepted: shared
                .metrics
                .value("ddlgate_connections_accepted_total", &[]) as u64,
            idle: by_state[0],
            in_transaction: by_state[1],
            failed: by_state[2],
        },
        ddl,
        lock_monitor: shared.monitor.read().map(|s| s.clone()).unwrap_or_default(),
    })
}
