//! The HTTP API of a running job — what Flink's REST API is to a Flink job, and what
//! `wasmflow savepoint|stop|status` and the dashboard use.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the dashboard ([`dashboard`]) |
//! | `GET /v1/job` | graph, chains, parallelism, state, attempt, restarts |
//! | `GET /v1/checkpoints` | checkpoint history: id, kind, trigger → complete, sync time, bytes, acks |
//! | `GET /v1/exceptions` | failures with the guest's error and backtrace |
//! | `POST /v1/savepoints` | take a savepoint (token) |
//! | `POST /v1/stop` | stop, optionally with a savepoint (token) |
//! | `GET /v1/openapi.json` | this API as OpenAPI 3.1 |
//! | `GET /metrics` | Prometheus metrics ([`crate::metrics`]) |
//!
//! axum routes, served by our own accept loop on hyper rather than `axum::serve`, for bounds
//! an untrusted local client cannot push past: at most [`MAX_CONNECTIONS`] connections (more are
//! closed at once), one request per connection (no idle keep-alive), request headers within
//! [`READ_TIMEOUT`], bodies at most [`MAX_BODY_BYTES`] read within [`READ_TIMEOUT`]. It listens
//! on loopback unless the job file names another address; calls that change something need the
//! job's token ([`auth`]), and savepoints go only below the job's savepoint directory
//! ([`SavepointPolicy`]).

mod auth;
pub mod client;
mod dashboard;
mod policy;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::new_token;
pub(crate) use auth::same_token;
pub use policy::SavepointPolicy;

use crate::metrics::JobMetrics;
use crate::runtime::job::ControlRequest;
use crate::status::JobStatus;

/// Connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 32;
/// Largest request body.
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// Longest wait for a request's headers, and for its body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub token: Arc<str>,
    pub policy: Arc<SavepointPolicy>,
    /// Requests that need the running job (savepoint, stop).
    pub jobs: mpsc::Sender<ControlRequest>,
    pub status: Arc<JobStatus>,
    /// The run's metrics: `GET /metrics`, and the numbers in `GET /v1/job`.
    pub metrics: Arc<JobMetrics>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "wasmflow job API", description = "The HTTP API of one running wasmflow job (docs/operations.md)."),
    modifiers(&TokenScheme),
    tags((name = "job"), (name = "checkpoints"))
)]
struct ApiDoc;

/// Declares the bearer token the `POST` routes require.
struct TokenScheme;

impl utoipa::Modify for TokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The API's routes and its OpenAPI description.
fn routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::job))
        .routes(routes!(routes::checkpoints))
        .routes(routes!(routes::exceptions))
        .routes(routes!(routes::savepoint))
        .routes(routes!(routes::stop))
        .split_for_parts()
}

/// This API as an OpenAPI document (also served at `/v1/openapi.json`, and committed as
/// `docs/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The whole application: API, OpenAPI document, dashboard, with the token check and body limits.
pub fn app(state: ApiState) -> Router {
    let (api, doc) = routes();
    let doc = Arc::new(doc);
    api.route("/v1/openapi.json", axum::routing::get(move || async move { axum::Json(doc.as_ref().clone()) }))
        .route("/metrics", axum::routing::get(routes::metrics))
        .merge(dashboard::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(READ_TIMEOUT))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A running API server.
pub struct ApiServer {
    /// The bound address.
    pub address: SocketAddr,
    active: Arc<AtomicUsize>,
}

impl ApiServer {
    /// Waits (at most `max`) until requests in progress have sent their replies, so a `stop`
    /// gets its answer before the process exits.
    pub async fn drain(&self, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        while self.active.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Binds `address` and serves the API on it until the process ends.
pub async fn serve(address: &str, state: ApiState) -> Result<ApiServer> {
    let listener = TcpListener::bind(address).await.with_context(|| format!("cannot listen on API address {address} ([job] control-address)"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            "the job's API listens on {local}, not loopback: anyone who can reach it can read the job's graph, checkpoints and errors (changes still need the token)"
        );
    }
    let app = app(state);
    let active = Arc::new(AtomicUsize::new(0));
    let counter = active.clone();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of descriptors, for instance: keep serving those already open.
                Err(e) => {
                    tracing::warn!("API: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Over the limit: closed at once (dropping the stream), nothing kept for it.
            let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            let counter = counter.clone();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(READ_TIMEOUT)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!("API connection: {e}");
                }
                counter.fetch_sub(1, Ordering::SeqCst);
                drop(slot);
            });
        }
    });
    Ok(ApiServer { address: local, active })
}

#[cfg(test)]
mod tests {
    /// `docs/openapi.json` is what the server serves; regenerate it with
    /// `WASMFLOW_BLESS=1 cargo test -p wasmflow-host openapi`.
    #[test]
    fn the_committed_openapi_document_is_current() {
        let generated = format!("{}\n", super::openapi().to_pretty_json().unwrap());
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        if std::env::var_os("WASMFLOW_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(committed == generated, "docs/openapi.json is stale: run WASMFLOW_BLESS=1 cargo test -p wasmflow-host openapi");
        for route in ["/v1/job", "/v1/checkpoints", "/v1/exceptions", "/v1/savepoints", "/v1/stop"] {
            assert!(generated.contains(&format!("\"{route}\"")), "{route} is described");
        }
    }
}
