// SPDX-License-Identifier: GPL-2.0

//! Block I/O requests (`struct bio`), as seen by a driver that remaps them.
//!
//! C header: [`include/linux/bio.h`](srctree/include/linux/bio.h)

use crate::{
    bindings,
    page::PAGE_SIZE,
    types::Opaque, //
};
use core::ptr;

/// The operation a [`Bio`] asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read sectors.
    Read,
    /// Write sectors.
    Write,
    /// Flush the volatile write cache (a bio with no data).
    Flush,
    /// Discard sectors.
    Discard,
    /// Write zeroes to sectors.
    WriteZeroes,
    /// Anything else (secure erase, zone operations, ...).
    Other,
}

/// A block I/O request, borrowed from the block layer.
///
/// # Invariants
///
/// The wrapped `struct bio` is valid, and owned by the caller that lent it for as long as the
/// reference lives.
#[repr(transparent)]
pub struct Bio(Opaque<bindings::bio>);

impl Bio {
    /// Creates a reference to a [`Bio`] from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct bio` that the caller may use exclusively for `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::bio) -> &'a mut Self {
        // SAFETY: `Bio` is a transparent wrapper of `struct bio`; the caller guarantees validity
        // and exclusive access for `'a`.
        unsafe { &mut *ptr.cast::<Self>() }
    }

    /// Returns the raw pointer to the `struct bio`.
    pub fn as_raw(&self) -> *mut bindings::bio {
        self.0.get()
    }

    /// Returns the first sector the request covers.
    #[inline]
    pub fn sector(&self) -> u64 {
        // SAFETY: The bio is valid by the type invariants.
        unsafe { (*self.as_raw()).bi_iter.bi_sector }
    }

    /// Sets the first sector the request covers, when remapping it.
    #[inline]
    pub fn set_sector(&mut self, sector: u64) {
        // SAFETY: The bio is valid and ours to change by the type invariants.
        unsafe { (*self.as_raw()).bi_iter.bi_sector = sector }
    }

    /// Returns the number of bytes the request still covers.
    #[inline]
    pub fn size(&self) -> u32 {
        // SAFETY: The bio is valid by the type invariants.
        unsafe { (*self.as_raw()).bi_iter.bi_size }
    }

    fn opf(&self) -> u32 {
        // SAFETY: The bio is valid by the type invariants.
        unsafe { (*self.as_raw()).bi_opf }
    }

    /// Returns the operation.
    pub fn op(&self) -> Op {
        match self.opf() & bindings::REQ_OP_MASK {
            bindings::req_op_REQ_OP_READ => Op::Read,
            bindings::req_op_REQ_OP_WRITE => Op::Write,
            bindings::req_op_REQ_OP_FLUSH => Op::Flush,
            bindings::req_op_REQ_OP_DISCARD => Op::Discard,
            bindings::req_op_REQ_OP_WRITE_ZEROES => Op::WriteZeroes,
            _ => Op::Other,
        }
    }

    /// Returns whether the cache must be flushed before the request (`REQ_PREFLUSH`).
    #[inline]
    pub fn is_preflush(&self) -> bool {
        self.opf() & bindings::REQ_PREFLUSH != 0
    }

    /// Returns whether the data must be on stable storage when the request completes (`REQ_FUA`).
    #[inline]
    pub fn is_fua(&self) -> bool {
        self.opf() & bindings::REQ_FUA != 0
    }

    /// Directs the request to another block device, when remapping it.
    ///
    /// # Safety
    ///
    /// `bdev` must be a valid block device that stays open until the request completes.
    pub unsafe fn set_dev(&mut self, bdev: *mut bindings::block_device) {
        // SAFETY: The bio is valid and ours by the type invariants; the caller guarantees `bdev`.
        unsafe { bindings::bio_set_dev(self.as_raw(), bdev) }
    }

    /// Calls `f(addr, len, pos)` for each piece of the request's data, from its current position,
    /// up to `limit` bytes: `addr` is the piece mapped into kernel memory, `len` its length and
    /// `pos` its offset in the request. A piece never crosses a page.
    fn for_each_mapped(&self, limit: usize, mut f: impl FnMut(*mut u8, usize, usize)) {
        let bio = self.as_raw();
        // SAFETY: The bio is valid by the type invariants; its iterator and vector describe its
        // data, which nobody else changes while we hold the bio.
        let (vecs, mut idx, mut done, size) = unsafe {
            (
                (*bio).bi_io_vec,
                (*bio).bi_iter.bi_idx as usize,
                (*bio).bi_iter.bi_offset as usize,
                (*bio).bi_iter.bi_size as usize,
            )
        };
        let mut remaining = size.min(limit);
        let mut pos = 0;
        while remaining > 0 {
            // SAFETY: While bytes remain in the iterator, `idx` indexes a valid vector entry.
            let bv = unsafe { &*vecs.add(idx) };
            let len = (bv.bv_len as usize - done).min(remaining);
            let mut off = bv.bv_offset as usize + done;
            let mut left = len;
            while left > 0 {
                // SAFETY: A bio vector entry is physically contiguous, so its pages are
                // consecutive `struct page`s.
                let page = unsafe { bv.bv_page.add(off / PAGE_SIZE) };
                let in_page = off % PAGE_SIZE;
                let n = left.min(PAGE_SIZE - in_page);
                // SAFETY: `page` is a valid page of the request's data.
                let addr = unsafe { bindings::kmap_local_page(page) }.cast::<u8>();
                // SAFETY: `in_page + n <= PAGE_SIZE`, inside the page just mapped.
                f(unsafe { addr.add(in_page) }, n, pos);
                // SAFETY: `addr` was mapped just above, and mappings are undone in reverse order.
                unsafe { bindings::kunmap_local(addr.cast()) };
                off += n;
                left -= n;
                pos += n;
            }
            remaining -= len;
            done += len;
            if done == bv.bv_len as usize {
                idx += 1;
                done = 0;
            }
        }
    }

    /// Copies the request's data, from its current position, into `dst`: as much as both hold.
    /// Returns the number of bytes copied.
    pub fn copy_to_slice(&self, dst: &mut [u8]) -> usize {
        let mut copied = 0;
        self.for_each_mapped(dst.len(), |addr, len, pos| {
            // SAFETY: `addr` is `len` mapped bytes of the request; `pos + len <= dst.len()`.
            unsafe { ptr::copy_nonoverlapping(addr, dst.as_mut_ptr().add(pos), len) };
            copied = pos + len;
        });
        copied
    }

    /// Copies `src` into the request's data buffers, from its current position: as much as both
    /// hold. Returns the number of bytes copied.
    pub fn copy_from_slice(&mut self, src: &[u8]) -> usize {
        let mut copied = 0;
        self.for_each_mapped(src.len(), |addr, len, pos| {
            // SAFETY: `addr` is `len` mapped bytes of the request, which we hold exclusively;
            // `pos + len <= src.len()`.
            unsafe { ptr::copy_nonoverlapping(src.as_ptr().add(pos), addr, len) };
            copied = pos + len;
        });
        copied
    }
}
