//! The exit codes of `wasmflow`, in one place (table in docs/cli.md).
//!
//! A command returns an `anyhow::Error`; one that carries a code (see [`Exit::wrap`] and
//! [`WithExit::exit_code`]) ends the process with it, any other with [`Exit::Error`].

use std::fmt;

/// How `wasmflow` ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// 0: the command did what it was asked (a job finished or was stopped).
    Success = 0,
    /// 1: any other error (an I/O error, a failed build, ...).
    Error = 1,
    /// 2: the command line is wrong (clap's own code: unknown flag, missing argument, `--set`
    /// without `=`).
    Usage = 2,
    /// 3: the job failed: it could not start, or it failed again after its restart strategy
    /// ran out of attempts.
    JobFailed = 3,
    /// 4: the running job could not be reached (no control endpoint, connection refused).
    Unreachable = 4,
    /// 5: an input file is invalid: a job file (syntax, schema, checks, overrides) or a module
    /// that is not a valid wasmflow operator.
    InvalidInput = 5,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// `error`, ending the process with this code.
    pub fn wrap(self, error: anyhow::Error) -> anyhow::Error {
        anyhow::Error::new(Coded { exit: self, error })
    }

    /// The code `error` carries (the outermost one, through any context added later), else
    /// [`Exit::Error`].
    pub fn of(error: &anyhow::Error) -> Exit {
        error.chain().find_map(|e| e.downcast_ref::<Coded>()).map_or(Exit::Error, |c| c.exit)
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// `result.exit_code(Exit::InvalidInput)?`
pub trait WithExit<T> {
    /// An error of this result ends the process with `exit`.
    fn exit_code(self, exit: Exit) -> anyhow::Result<T>;
}

impl<T> WithExit<T> for anyhow::Result<T> {
    fn exit_code(self, exit: Exit) -> anyhow::Result<T> {
        self.map_err(|e| exit.wrap(e))
    }
}

/// An error with its exit code; displays as the error itself (with its causes).
#[derive(Debug)]
struct Coded {
    exit: Exit,
    error: anyhow::Error,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Coded {}

#[cfg(test)]
mod tests {
    use anyhow::anyhow;

    use super::*;

    #[test]
    fn the_code_survives_context_and_the_message_is_unchanged() {
        let e = Exit::InvalidInput.wrap(anyhow!("inner").context("middle")).context("outer");
        assert_eq!(Exit::of(&e), Exit::InvalidInput);
        assert_eq!(format!("{e:#}"), "outer: middle: inner");
        assert_eq!(Exit::of(&anyhow!("plain")), Exit::Error);
        assert_eq!([Exit::Success, Exit::Error, Exit::Usage, Exit::JobFailed, Exit::Unreachable, Exit::InvalidInput].map(Exit::code), [0, 1, 2, 3, 4, 5]);
    }
}
