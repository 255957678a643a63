//! The `log` interface: guest log lines go to the host's `tracing` log, tagged with operator
//! and subtask, cut to a maximum length and rate-limited so a guest cannot flood the host.

use std::time::Instant;

use super::StoreData;
use wasmflow_types::{Level, SubtaskTag};

use crate::engine::bindings::wasmflow::operator::log::{Host, Level as WireLevel};

/// A token bucket of log lines per second, and the longest line kept.
pub struct LogBudget {
    pub(crate) max_line: usize,
    per_second: u32,
    window_start: Instant,
    in_window: u32,
    dropped: u64,
}

impl LogBudget {
    pub fn new(max_line: usize, per_second: u32) -> Self {
        LogBudget { max_line, per_second, window_start: Instant::now(), in_window: 0, dropped: 0 }
    }

    /// Whether one more line may be logged now.
    fn admit(&mut self) -> bool {
        if self.window_start.elapsed().as_secs() >= 1 {
            if self.dropped > 0 && self.in_window >= self.per_second {
                tracing::warn!(dropped = self.dropped, "guest log lines dropped by the rate limit");
            }
            self.window_start = Instant::now();
            self.in_window = 0;
        }
        if self.in_window >= self.per_second {
            self.dropped += 1;
            return false;
        }
        self.in_window += 1;
        true
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Guest text made safe for the host's log and error messages: at most `max` bytes (cut on a
/// character boundary, with a note of the original size), and every control character escaped
/// (`\n` as `\\n`, ...) so a guest cannot start a line that looks like the host's own, or send
/// terminal escape sequences.
pub fn sanitize(message: &str, max: usize) -> String {
    let kept = cut(message, max);
    let mut out = String::with_capacity(kept.len() + 16);
    for c in kept.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if kept.len() < message.len() {
        out.push_str(&format!(" … ({} bytes, cut to limits.log-line-bytes = {max})", message.len()));
    }
    out
}

fn cut(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl Host for StoreData {
    fn log(&mut self, level: WireLevel, message: String) -> anyhow::Result<()> {
        if !self.log.admit() {
            return Ok(());
        }
        emit(&self.tag, crate::engine::wire::level(level), &sanitize(&message, self.log.max_line));
        Ok(())
    }
}

/// Writes one operator log line to the host's log (target `guest`, with operator and subtask).
pub(crate) fn emit(tag: &SubtaskTag, level: Level, msg: &str) {
    let (op, sub) = (tag.operator.as_str(), tag.subtask);
    match level {
        Level::Trace => tracing::trace!(target: "guest", operator = op, subtask = sub, "{msg}"),
        Level::Debug => tracing::debug!(target: "guest", operator = op, subtask = sub, "{msg}"),
        Level::Info => tracing::info!(target: "guest", operator = op, subtask = sub, "{msg}"),
        Level::Warn => tracing::warn!(target: "guest", operator = op, subtask = sub, "{msg}"),
        Level::Error => tracing::error!(target: "guest", operator = op, subtask = sub, "{msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_over_the_rate_are_dropped_and_counted() {
        let mut b = LogBudget::new(10, 3);
        let admitted = (0..5).filter(|_| b.admit()).count();
        assert_eq!((admitted, b.dropped()), (3, 2));
    }

    #[test]
    fn guest_text_cannot_forge_host_lines_or_grow_without_bound() {
        assert_eq!(sanitize("a\n2099 INFO forged\r\x1b[31m", 100), "a\\n2099 INFO forged\\r\\u{1b}[31m");
        assert_eq!(sanitize(&"x".repeat(50), 10), format!("{} … (50 bytes, cut to limits.log-line-bytes = 10)", "x".repeat(10)));
        assert_eq!(sanitize("tab\tok", 100), "tab\\tok");
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("hello", 10), "hello");
    }
}
