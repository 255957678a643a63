//! The API's routes: typed requests and replies (serde), each handler described for OpenAPI.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use utoipa::ToSchema;

use super::ApiState;
use crate::checkpoint::Location;
use crate::metrics::{KafkaLagView, OperatorMetricsView};
use crate::runtime::job::ControlRequest;
use crate::status::view::{CheckpointHistory, ExceptionHistory, JobView};

/// Every error reply: `{"error": "…"}` with a status that says whose fault it is.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorReply {
    pub error: String,
}

/// An error and its HTTP status.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn unauthorized() -> ApiError {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthorized: wrong or missing token; send `Authorization: Bearer <token>` with the token from <checkpoint dir>/_control (readable by the job's user)".into(),
        )
    }

    fn ended() -> ApiError {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "the job ended".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorReply { error: self.1 })).into_response()
    }
}

/// `POST /v1/savepoints`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SavepointRequest {
    /// An existing directory, or an object-store prefix (`s3://bucket/prefix`), to write
    /// `savepoint-<id>` into, below the job's savepoint directory unless the job allows any
    /// target; default: the savepoint directory itself.
    #[serde(default)]
    pub target: Option<String>,
}

/// `POST /v1/stop`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Take a final savepoint and stop only once it is complete (Flink's stop-with-savepoint).
    #[serde(default)]
    pub savepoint: bool,
    /// Where the savepoint goes (as in [`SavepointRequest`]).
    #[serde(default)]
    pub target: Option<String>,
}

/// A completed savepoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SavepointReply {
    /// The savepoint's directory or prefix (`…/savepoint-<id>`): restore with `wasmflow run --from-savepoint`.
    pub path: String,
}

/// The job stopped.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StopReply {
    /// The final savepoint, if one was asked for.
    pub savepoint: Option<String>,
}

fn target(state: &ApiState, given: Option<String>) -> Result<Location, ApiError> {
    let location = match given {
        Some(text) => text.parse::<Location>().map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e:#}")))?,
        None => state.policy.root.clone(),
    };
    state.policy.check(&location).map_err(|e| ApiError(StatusCode::FORBIDDEN, format!("{e:#}")))
}

/// Sends the running job a request and waits for its answer. A refusal from the job (e.g.
/// restarting, or the savepoint failed) is a conflict with its state, not the caller's syntax.
async fn ask<T>(state: &ApiState, request: impl FnOnce(oneshot::Sender<Result<T, String>>) -> ControlRequest) -> Result<T, ApiError> {
    let (reply, answer) = oneshot::channel();
    state.jobs.send(request(reply)).await.map_err(|_| ApiError::ended())?;
    answer.await.map_err(|_| ApiError::ended())?.map_err(|e| ApiError(StatusCode::CONFLICT, e))
}

/// `GET /v1/job`: the job, and what each operator's subtasks are doing.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobReply {
    #[serde(flatten)]
    pub job: JobView,
    /// Per operator and subtask: records and bytes in/out, busy/idle/back-pressured ms per
    /// second over the last seconds, guest memory.
    pub metrics: Vec<OperatorMetricsView>,
    /// Per Kafka partition being read: records yet to read.
    pub kafka_lag: Vec<KafkaLagView>,
}

/// The job graph, its state and its operators' numbers.
#[utoipa::path(get, path = "/v1/job", tag = "job", responses((status = OK, body = JobReply)))]
pub async fn job(State(state): State<ApiState>) -> Json<JobReply> {
    Json(JobReply { job: state.status.job(), metrics: state.metrics.operators(), kafka_lag: state.metrics.kafka_lag() })
}

/// Prometheus metrics in the OpenMetrics text format (not part of the OpenAPI document: its
/// format is Prometheus's).
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], state.metrics.encode())
}

/// Checkpoint counts and history, newest first.
#[utoipa::path(get, path = "/v1/checkpoints", tag = "checkpoints", responses((status = OK, body = CheckpointHistory)))]
pub async fn checkpoints(State(state): State<ApiState>) -> Json<CheckpointHistory> {
    Json(state.status.checkpoints())
}

/// The failures that restarted (or ended) the job, newest first.
#[utoipa::path(get, path = "/v1/exceptions", tag = "job", responses((status = OK, body = ExceptionHistory)))]
pub async fn exceptions(State(state): State<ApiState>) -> Json<ExceptionHistory> {
    Json(state.status.exceptions())
}

/// Takes a savepoint; answers when it is complete.
#[utoipa::path(
    post, path = "/v1/savepoints", tag = "checkpoints",
    request_body = SavepointRequest,
    security(("token" = [])),
    responses(
        (status = OK, body = SavepointReply),
        (status = UNAUTHORIZED, body = ErrorReply),
        (status = BAD_REQUEST, description = "target is not a path or a storage URL", body = ErrorReply),
        (status = FORBIDDEN, description = "target outside the savepoint directory", body = ErrorReply),
        (status = CONFLICT, description = "the job cannot take it now (restarting) or it failed", body = ErrorReply),
    )
)]
pub async fn savepoint(State(state): State<ApiState>, Json(req): Json<SavepointRequest>) -> Result<Json<SavepointReply>, ApiError> {
    let target = target(&state, req.target)?;
    let path = ask(&state, |reply| ControlRequest::Savepoint { target, reply }).await?;
    Ok(Json(SavepointReply { path: path.to_string() }))
}

/// Stops the job, after a final savepoint if asked; answers when it stopped.
#[utoipa::path(
    post, path = "/v1/stop", tag = "job",
    request_body = StopRequest,
    security(("token" = [])),
    responses(
        (status = OK, body = StopReply),
        (status = UNAUTHORIZED, body = ErrorReply),
        (status = BAD_REQUEST, description = "target is not a path or a storage URL", body = ErrorReply),
        (status = FORBIDDEN, description = "target outside the savepoint directory", body = ErrorReply),
        (status = CONFLICT, description = "the savepoint failed (the job keeps running)", body = ErrorReply),
    )
)]
pub async fn stop(State(state): State<ApiState>, Json(req): Json<StopRequest>) -> Result<Json<StopReply>, ApiError> {
    let savepoint = if req.savepoint || req.target.is_some() { Some(target(&state, req.target)?) } else { None };
    let path = ask(&state, |reply| ControlRequest::Stop { savepoint, reply }).await?;
    Ok(Json(StopReply { savepoint: path.map(|p| p.to_string()) }))
}
