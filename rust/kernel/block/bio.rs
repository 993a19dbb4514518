// SPDX-License-Identifier: GPL-2.0

//! Block I/O requests (`struct bio`), as seen by a driver that remaps them.
//!
//! C header: [`include/linux/bio.h`](srctree/include/linux/bio.h)

use crate::{
    bindings,
    types::Opaque, //
};

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

    fn raw(&self) -> *mut bindings::bio {
        self.0.get()
    }

    /// Returns the first sector the request covers.
    #[inline]
    pub fn sector(&self) -> u64 {
        // SAFETY: The bio is valid by the type invariants.
        unsafe { (*self.raw()).bi_iter.bi_sector }
    }

    /// Sets the first sector the request covers, when remapping it.
    #[inline]
    pub fn set_sector(&mut self, sector: u64) {
        // SAFETY: The bio is valid and ours to change by the type invariants.
        unsafe { (*self.raw()).bi_iter.bi_sector = sector }
    }

    /// Returns the number of bytes the request still covers.
    #[inline]
    pub fn size(&self) -> u32 {
        // SAFETY: The bio is valid by the type invariants.
        unsafe { (*self.raw()).bi_iter.bi_size }
    }

    fn opf(&self) -> u32 {
        // SAFETY: The bio is valid by the type invariants.
        unsafe { (*self.raw()).bi_opf }
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
        unsafe { bindings::bio_set_dev(self.raw(), bdev) }
    }
}
