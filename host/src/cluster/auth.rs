//! Who may talk to a job manager or a worker: the holders of the cluster's shared secret.
//!
//! Every control stream and data stream carries it as `authorization: Bearer <secret>`; the
//! job manager and each worker refuse a stream without it (`UNAUTHENTICATED`) before reading a
//! message, so only the job's own workers can attach, feed records into a subtask or receive
//! controls. A job manager that starts its workers itself (`wasmflow run --workers N`) makes a
//! new random secret per run and hands it to them in their environment; workers started by
//! someone else (Kubernetes) and their job manager read `WASMFLOW_CLUSTER_SECRET`.
//!
//! The secret authenticates; it does not encrypt. Between machines, run the cluster on a private
//! network (docs/distributed.md, security).

use anyhow::{Result, bail};
use tonic::Status;
use tonic::metadata::{MetadataMap, MetadataValue};

/// The environment variable the secret is read from.
pub const SECRET_ENV: &str = "WASMFLOW_CLUSTER_SECRET";

/// Secrets shorter than this are refused: a guessable secret lets anyone feed a subtask.
const MIN_LEN: usize = 16;

/// The cluster's shared secret.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A new random secret (128 bits from the OS).
    pub fn generate() -> Result<Secret> {
        Ok(Secret(crate::api::new_token()?))
    }

    /// The secret in `WASMFLOW_CLUSTER_SECRET`.
    pub fn from_env() -> Result<Secret> {
        match std::env::var(SECRET_ENV) {
            Ok(s) => Secret::new(s),
            Err(_) => bail!(
                "{SECRET_ENV} is not set: workers and their job manager authenticate with a shared secret; set the same value (at least {MIN_LEN} characters, e.g. `openssl rand -hex 16`) for both"
            ),
        }
    }

    /// `s`, if long enough and a valid header value.
    pub fn new(s: String) -> Result<Secret> {
        if s.len() < MIN_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("{SECRET_ENV}: the cluster secret must be at least {MIN_LEN} printable characters without spaces");
        }
        Ok(Secret(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Puts the secret on an outgoing request.
    pub fn attach<T>(&self, request: &mut tonic::Request<T>) {
        let value: MetadataValue<_> = format!("Bearer {}", self.0).parse().expect("checked printable in Secret::new");
        request.metadata_mut().insert("authorization", value);
    }

    /// Refuses a request that does not carry the secret.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let given = metadata.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(s) if crate::api::same_token(s, &self.0) => Ok(()),
            _ => Err(Status::unauthenticated("wrong or missing cluster secret (WASMFLOW_CLUSTER_SECRET)")),
        }
    }
}
