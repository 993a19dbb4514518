// SPDX-License-Identifier: GPL-2.0
//! `hibsnap resume` feeds the kernel's loader, which takes the memory of the whole image at
//! once: the reading of a container must allocate nothing per chunk after it began. This
//! test counts the allocations of the whole process, so it is a binary of its own, with this
//! one test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use hibsnap::container::{Codec, Header, Key, Reader, PAGE};
use hibsnap::stream::{read_container, write_container};
use hibsnap::uapi::Geometry;

/// The system's allocator, counting the allocations.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to `System`, which upholds `GlobalAlloc`'s contract.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees for `layout` are `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (above).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and the caller's guarantees for `new_size` are `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A container of `chunks` chunks of 16 pages, some of them zero, the others compressible.
fn image(key: &Key, chunks: usize) -> Vec<u8> {
    let chunk = 16 * PAGE;
    let stream: Vec<u8> = (0..chunks * chunk)
        .map(|i| {
            if (i / PAGE) % 3 == 0 {
                0
            } else {
                (i * 7 / 5) as u8
            }
        })
        .collect();
    let header = Header {
        chunk_size: chunk as u32,
        codec: Codec::Zstd(1),
        image_id: [2; 16],
        key_id: key.id(),
        stream_bytes: stream.len() as u64,
        release: "test".into(),
        build_id: vec![],
        geometry: Geometry::default(),
    };
    write_container(&stream[..], Vec::new(), header, key, 2, |_| {})
        .unwrap()
        .0
}

/// The allocations of a parallel read of `img` with `threads` threads.
fn allocations_of_a_read(img: &[u8], key: &Key, threads: usize) -> usize {
    let r = Reader::new(img, key.clone()).unwrap();
    let mut bytes = 0;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    read_container(r, threads, |c| {
        bytes += c.len();
        Ok(())
    })
    .unwrap();
    let n = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert!(bytes > 0);
    n
}

#[test]
fn reading_allocates_nothing_per_chunk() {
    let key = Key::new([5; 32]);
    let (short, long) = (image(&key, 8), image(&key, 200));
    for threads in [1, 2, 4] {
        let a = allocations_of_a_read(&short, &key, threads);
        let b = allocations_of_a_read(&long, &key, threads);
        // A thread's first wait on a channel allocates, and whether it waits depends on
        // timing: a few more, never one a chunk.
        assert!(
            b <= a + 8,
            "{threads} threads: 8 chunks took {a} allocations, 200 took {b}"
        );
    }
}
