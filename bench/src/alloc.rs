//! A counting global allocator: current and peak heap bytes allocated **by the calling thread**.
//!
//! Per-thread counters (plain `Cell`s) rather than process-wide atomics: shared atomics on every
//! allocation would slow the multi-threaded pipeline benchmarks, and native operators more than
//! wasm ones (whose allocations stay inside linear memory). The restore benchmark measures on one
//! thread, so its numbers are exact. Counters wrap rather than overflow because a thread may free
//! blocks another thread allocated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            // `try_with`: the thread's counters may already be gone while it exits.
            let _ = CURRENT.try_with(|c| {
                let now = c.get().wrapping_add(layout.size());
                c.set(now);
                let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
            });
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        let _ = CURRENT.try_with(|c| c.set(c.get().wrapping_sub(layout.size())));
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Resets this thread's peak to its current usage and returns the current usage.
pub fn reset_peak() -> usize {
    let now = CURRENT.with(Cell::get);
    PEAK.with(|p| p.set(now));
    now
}

/// This thread's peak heap bytes since the last [`reset_peak`].
pub fn peak() -> usize {
    PEAK.with(Cell::get)
}
