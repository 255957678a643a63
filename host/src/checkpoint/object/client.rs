//! The object-store client under [`super::ObjectStorage`]: building a store for a URL with the
//! job's `[object-store]` options, running its requests from synchronous code, and bounded reads.

use std::collections::BTreeMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjPath;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, RetryConfig};

use crate::checkpoint::location::ObjectUrl;

/// Options of the object-store client (`[object-store]` in the job file): `endpoint`, `region`,
/// `allow-http`, … — the keys `object_store`'s S3 builder takes, in kebab or snake case, with or
/// without `aws_`. Credentials are better left to the environment (`AWS_ACCESS_KEY_ID`, …).
pub type StoreOptions = BTreeMap<String, String>;

/// The runtime every object-store request runs on. Storage methods are synchronous (subtasks
/// call them from blocking threads, the coordinator from its task), and the client's
/// connections belong to one runtime: this one, which lives as long as the process.
fn io() -> &'static tokio::runtime::Runtime {
    static IO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    IO.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("wasmflow-object-io")
            .enable_all()
            .build()
            .expect("cannot start the object-store I/O runtime")
    })
}

/// Runs `request` on the I/O runtime and waits for it. Safe from any thread, inside a runtime
/// or not: the caller only waits on a channel.
pub fn block<T: Send + 'static>(request: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    io().spawn(async move {
        let _ = tx.send(request.await);
    });
    rx.recv().expect("the object-store I/O runtime dropped a request")
}

/// Starts `request` on the I/O runtime without waiting (best-effort cleanup).
pub fn spawn(request: impl Future<Output = ()> + Send + 'static) {
    io().spawn(request);
}

/// How often and how long a failed request is retried. `object_store`'s default (10 retries
/// over up to 3 minutes) would hold a checkpoint far past its timeout when the server is down;
/// a checkpoint that cannot be written should fail and leave the next one to try.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2), base: 2.0 },
        max_retries: 3,
        retry_timeout: Duration::from_secs(15),
    }
}

/// A client for the store of `url` (its scheme and bucket).
pub fn build(url: &ObjectUrl, options: &StoreOptions) -> Result<Arc<dyn ObjectStore>> {
    // reqwest's TLS takes rustls's process-wide provider; ring is the one built in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match url.scheme.as_str() {
        "s3" => {
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(&url.bucket).with_retry(retry());
            for (key, value) in options {
                let name = key.replace('-', "_");
                let parsed = AmazonS3ConfigKey::from_str(&name).map_err(|_| {
                    anyhow!("[object-store] {key}: not an S3 client option; see docs/object-storage.md for the options (endpoint, region, allow-http, …)")
                })?;
                builder = builder.with_config(parsed, value);
            }
            let store = builder
                .build()
                .map_err(|e| anyhow!("{url}: cannot set up the S3 client: {e}; check [object-store] in the job file and the AWS_* environment"))?;
            Ok(Arc::new(store))
        }
        other => bail!("{url}: no object-store client for '{other}://' in this build"),
    }
}

/// The object path of `url`'s prefix.
pub fn prefix(url: &ObjectUrl) -> ObjPath {
    ObjPath::from(url.prefix.as_str())
}

/// `base/rel`, where `rel` is `/`-separated.
pub fn child(base: &ObjPath, rel: &str) -> ObjPath {
    rel.split('/').filter(|s| !s.is_empty()).fold(base.clone(), |p, seg| p.join(seg))
}

/// An object's bytes, if it exists and is at most `max` bytes (a larger one is refused unread).
pub async fn get_bounded(store: &dyn ObjectStore, path: &ObjPath, max: u64, name: &str, what: &str) -> Result<Option<(bytes::Bytes, Option<String>)>> {
    let got = match store.get(path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => bail!("{name}: cannot read {what}: {e}"),
    };
    if got.meta.size > max {
        bail!("{name}: {what} is {} bytes, more than the {max} bytes expected", got.meta.size);
    }
    let e_tag = got.meta.e_tag.clone();
    let bytes = got.bytes().await.map_err(|e| anyhow!("{name}: cannot read {what}: {e}"))?;
    if bytes.len() as u64 > max {
        bail!("{name}: {what} grew past {max} bytes while being read");
    }
    Ok(Some((bytes, e_tag)))
}

/// Above this size an object is uploaded in parts: one PUT is limited to 5 GiB, and a part that
/// fails is retried alone instead of the whole object.
pub const MULTIPART_FROM: usize = 64 << 20;
/// Size of one part (S3 takes 5 MiB to 5 GiB), and how many are in flight at once.
const PART_BYTES: usize = 16 << 20;
const PARTS_IN_FLIGHT: usize = 4;

/// Writes `bytes` to `path` in parts (see [`MULTIPART_FROM`]); the object appears whole or not
/// at all, and a failed upload is aborted so that no parts are left behind.
pub async fn put_in_parts(store: &dyn ObjectStore, path: &ObjPath, bytes: Vec<u8>) -> object_store::Result<()> {
    let upload = store.put_multipart(path).await?;
    let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    let bytes = bytes::Bytes::from(bytes);
    for start in (0..bytes.len()).step_by(PART_BYTES) {
        if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.put(bytes.slice(start..(start + PART_BYTES).min(bytes.len())));
    }
    writer.finish().await.map(|_| ())
}

/// [`get_bounded`] of the object `url` names, from synchronous code (see [`block`]).
pub fn read(store: &Arc<dyn ObjectStore>, url: &ObjectUrl, max: u64, what: &str) -> Result<Option<(bytes::Bytes, Option<String>)>> {
    let (store, path, name, what) = (store.clone(), prefix(url), url.to_string(), what.to_string());
    block(async move { get_bounded(store.as_ref(), &path, max, &name, &what).await })
}

/// The names of the "directories" directly below `base`.
pub async fn child_dirs(store: &dyn ObjectStore, base: &ObjPath) -> Result<Vec<String>> {
    let listed = store.list_with_delimiter(Some(base)).await?;
    Ok(listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect())
}

/// Deletes every object below `base`.
pub async fn delete_below(store: Arc<dyn ObjectStore>, base: ObjPath) -> Result<()> {
    let paths = store.list(Some(&base)).map_ok(|m| m.location).boxed();
    let deleted: Vec<_> = store.delete_stream(paths).collect().await;
    for d in deleted {
        match d {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
