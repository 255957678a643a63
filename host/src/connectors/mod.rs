//! Capabilities backed by external systems. Each is linked into an operator only when the job
//! file grants it.
pub mod kafka;
