//! A global allocator that records the largest single allocation of each thread, so a test can
//! prove that an oversized header is refused before a buffer of the claimed size exists. Counted
//! per thread: the other tests of the binary run concurrently and may allocate what they like.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct LargestAllocation;

thread_local! {
    // Const-initialised and without a destructor: safe to touch from inside the allocator.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the slot may be gone while the thread is being torn down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

/// Forgets what this thread allocated so far.
pub fn reset() {
    LARGEST.with(|l| l.set(0));
}

/// The largest single allocation this thread made since `reset`.
pub fn largest() -> usize {
    LARGEST.with(Cell::get)
}

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;
