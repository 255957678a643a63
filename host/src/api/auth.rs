//! The job's token: every call that changes something (`POST`) must carry it as
//! `Authorization: Bearer <token>`. It is kept with the address in `<checkpoint dir>/_control`,
//! a file only the job's user can read (mode 0600), so on a shared machine only that user (and
//! root) can savepoint or stop the job. Reads (`GET`) need no token: they reveal the graph and
//! numbers, never state or the token.

use std::io::Read;

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::routes::ApiError;

/// A new random token (128 bits from the OS).
pub fn new_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).context("cannot read /dev/urandom for the job's token")?;
    Ok(hex::encode(bytes))
}

/// Equal in time independent of where the strings differ.
pub(crate) fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware: refuses a mutating request without the job's token (401).
pub async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return next.run(request).await;
    }
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same_token(t, &state.token) => next.run(request).await,
        _ => {
            tracing::warn!("API request {} {} refused: wrong or missing token", request.method(), request.uri().path());
            ApiError::unauthorized().into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
        assert_eq!(new_token().unwrap().len(), 32);
        assert_ne!(new_token().unwrap(), new_token().unwrap());
    }
}
