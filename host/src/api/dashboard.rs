//! The dashboard: one static page (HTML, CSS and a small hand-written script, compiled into the
//! binary) that polls the API and draws the job graph with per-operator rates and back-pressure,
//! the checkpoint history, the failures and the Kafka lag. No build-time Node toolchain and no
//! third-party script: nothing to fetch at run time, nothing to audit but these three files.

use axum::Router;
use axum::http::header;
use axum::routing::get;

use super::ApiState;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// `GET /`, `/dashboard.js`, `/dashboard.css`.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX) }))
        .route("/dashboard.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT) }))
        .route("/dashboard.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }))
}
