//! Logging into the host's structured log, and the guest's clock.
//!
//! Inside wasm there is no stdout: use [`info!`](crate::info) and friends, or import the SDK's
//! [`println!`](crate::println) (`use wasmflow_guest_sdk::println;`), which goes to the host log
//! instead of being dropped.
//! Natively (in unit tests) the same calls print to stderr and are kept by the test harness.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

pub use wasmflow_types::Level;

/// Whether native log lines are also printed to stderr (on for tests; a host that forwards them
/// to its own log turns it off).
static ECHO_TO_STDERR: AtomicBool = AtomicBool::new(true);

/// Natively: whether [`log`] also prints to stderr (default on). Hosts that compile operators
/// in and forward [`take_captured`] lines to their own log turn it off.
pub fn echo_to_stderr(on: bool) {
    ECHO_TO_STDERR.store(on, Ordering::Relaxed);
}

thread_local! {
    static CAPTURED: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
}

/// Sends one line to the host's log (tagged there with operator and subtask).
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::wasmflow::operator::log::{Level as L, log as host_log};
        let l = match level {
            Level::Trace => L::Trace,
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        };
        host_log(l, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        if ECHO_TO_STDERR.load(Ordering::Relaxed) {
            eprintln!("[{level:?}] {message}");
        }
        CAPTURED.with(|c| c.borrow_mut().push((level, message.to_string())));
    }
}

/// Log lines emitted natively on this thread since the last call (used by the test harness and
/// by hosts running native operators).
pub fn take_captured() -> Vec<(Level, String)> {
    CAPTURED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

/// Makes a panic in the guest reach the host log with its message and location before the
/// module traps, so the host can report it with the operator and subtask.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| log(Level::Error, &format!("panic: {info}"))));
}

/// Milliseconds since the Unix epoch, from the host's clock.
pub fn now_millis() -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::wasmflow::operator::clock::now_millis()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// Logs at info level: `info!("read {} records", n)`.
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Info, &format!($($t)*)) }; }
/// Logs at warn level.
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Warn, &format!($($t)*)) }; }
/// Logs at error level.
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Error, &format!($($t)*)) }; }
/// Logs at debug level.
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Debug, &format!($($t)*)) }; }
/// Logs at trace level.
#[macro_export]
macro_rules! trace { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Trace, &format!($($t)*)) }; }

/// `println!` that reaches the host log (info level) instead of vanishing inside wasm.
/// Bring it into scope with `use wasmflow_guest_sdk::println;`.
#[macro_export]
macro_rules! println { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Info, &format!($($t)*)) }; }
/// `eprintln!` that reaches the host log (warn level).
#[macro_export]
macro_rules! eprintln { ($($t:tt)*) => { $crate::log::log($crate::log::Level::Warn, &format!($($t)*)) }; }
