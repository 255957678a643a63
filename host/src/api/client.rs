//! A blocking client of a job's API, for the CLI (`wasmflow savepoint|stop|status`) and tests.
//!
//! ```no_run
//! use wasmflow_host::api::client::Client;
//! let reply = Client::new("127.0.0.1:8081", None).job()?;
//! println!("{} is {:?}", reply.job.name, reply.job.state);
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::routes::{ErrorReply, JobReply, SavepointReply, SavepointRequest, StopReply, StopRequest};
use crate::status::view::{CheckpointHistory, ExceptionHistory};

/// The job's API could not be reached (not running, wrong address): the CLI exits with its own
/// code for it.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the job's API at {address}: {cause}; is the job running? (its address is printed at start and kept in <checkpoint dir>/_control)")]
pub struct Unreachable {
    pub address: String,
    pub cause: String,
}

/// A client of one job's API.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// `address` is `host:port` (as `_control` holds it) or a base URL; `token` is needed for
    /// savepoints and stop.
    pub fn new(address: &str, token: Option<String>) -> Client {
        let base = if address.contains("://") { address.trim_end_matches('/').to_string() } else { format!("http://{address}") };
        // No overall timeout: a savepoint of large state takes as long as it takes; a job
        // that is not there is found out by the connect timeout.
        let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_connect(Some(Duration::from_secs(5))).build().into();
        Client { base, token, agent }
    }

    fn reply<T: DeserializeOwned>(&self, response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<T> {
        let mut response = response.map_err(|e| Unreachable { address: self.base.clone(), cause: e.to_string() })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.body_mut().read_json()?);
        }
        match response.body_mut().read_json::<ErrorReply>() {
            Ok(e) => bail!("the job refused ({status}): {}", e.error),
            Err(_) => bail!("the job's API answered {status}"),
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.reply(self.agent.get(format!("{}{path}", self.base)).call())
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let mut request = self.agent.post(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        self.reply(request.send_json(body))
    }

    /// `GET /v1/job`.
    pub fn job(&self) -> Result<JobReply> {
        self.get("/v1/job")
    }

    /// `GET /v1/checkpoints`.
    pub fn checkpoints(&self) -> Result<CheckpointHistory> {
        self.get("/v1/checkpoints")
    }

    /// `GET /v1/exceptions`.
    pub fn exceptions(&self) -> Result<ExceptionHistory> {
        self.get("/v1/exceptions")
    }

    /// `POST /v1/savepoints`: the savepoint's directory, once complete.
    pub fn savepoint(&self, target: Option<String>) -> Result<SavepointReply> {
        self.post("/v1/savepoints", &SavepointRequest { target })
    }

    /// `POST /v1/stop`.
    pub fn stop(&self, request: &StopRequest) -> Result<StopReply> {
        self.post("/v1/stop", request)
    }
}
