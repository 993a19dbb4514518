// SPDX-License-Identifier: GPL-2.0

//! The snapshot state of a target: its mode and its store of the chunks written since the
//! snapshot, shared with the registry, which switches every live target at the atomic point and
//! ends their snapshots afterwards (`merge` or `drop`). A table reloaded while a snapshot is held
//! takes the snapshot over ([`Shared::adopt`]).

use crate::target::Counters;
use kernel::{
    device_mapper::{
        IoClient,
        SharedDevice, //
    },
    prelude::*,
    rbtree::RBTree,
    sync::{
        atomic::{
            ordering,
            Atomic, //
        },
        Arc,
        Mutex, //
    }, //
};

/// The size of a store chunk, and the device's logical block size.
pub(crate) const CHUNK_BYTES: usize = 4096;
/// Sectors per chunk.
pub(crate) const CHUNK_SECTORS: u64 = (CHUNK_BYTES / 512) as u64;
/// The store limit when the table gives none, in MiB.
pub(crate) const DEFAULT_STORE_MIB: u64 = 256;

/// One chunk of data, in a `kmalloc` allocation (`dm_io()` writes it back from there).
pub(crate) type Chunk = KBox<[u8; CHUNK_BYTES]>;

/// The target's state.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum Mode {
    /// Every bio goes to the origin.
    Passthrough = 0,
    /// Writes go to the store; the origin receives none.
    Snapshot = 1,
    /// A write to the store found it full: writes fail until `merge` or `drop`.
    Full = 2,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Passthrough => "passthrough",
            Mode::Snapshot => "snapshot",
            Mode::Full => "full",
        }
    }
}

/// What the snapshot state holds, under the target's mutex.
pub(crate) struct Inner {
    /// Chunks written since the snapshot, by chunk number.
    pub(crate) store: RBTree<u64, Chunk>,
    /// How many chunks `store` holds.
    pub(crate) chunks: u64,
}

/// What a target shares with the registry: its mode, its store, and (while the target exists)
/// the origin it merges into.
#[pin_data]
pub(crate) struct Shared {
    /// The mode. Switching to [`Mode::Snapshot`] takes no lock, so that it can be done at the
    /// atomic point with interrupts off; every other switch is made under `inner`.
    pub(crate) mode: Atomic<i32>,
    #[pin]
    pub(crate) inner: Mutex<Inner>,
    /// The origin, for `merge`, wherever it is started from; revoked when the target is
    /// destroyed, which waits for a merge in progress.
    pub(crate) origin: Arc<SharedDevice>,
    /// The origin's device number.
    pub(crate) origin_devt: u32,
    pub(crate) io: IoClient,
    /// The device number of the device-mapper device the target is in.
    pub(crate) devt: u32,
    /// The device is suspended by [`crate::registry::suspend_all`]: the target may be
    /// snapshotted at the atomic point.
    pub(crate) held: Atomic<bool>,
    /// The most chunks the store may hold.
    pub(crate) store_limit: u64,
    pub(crate) counters: Counters,
}

impl Shared {
    pub(crate) fn mode(&self) -> Mode {
        match self.mode.load(ordering::Acquire) {
            0 => Mode::Passthrough,
            1 => Mode::Snapshot,
            _ => Mode::Full,
        }
    }

    /// Switches the mode; `inner` is held, as every switch but [`Shared::snapshot`] requires.
    pub(crate) fn set_mode(&self, _inner: &mut Inner, mode: Mode) {
        self.mode.store(mode as i32, ordering::Release);
    }

    /// `snapshot`: from now on the origin receives no write. Takes no lock.
    pub(crate) fn snapshot(&self) -> Result {
        self.mode
            .cmpxchg(
                Mode::Passthrough as i32,
                Mode::Snapshot as i32,
                ordering::Full,
            )
            .map(|_| ())
            .map_err(|_| EBUSY)
    }

    /// `merge`: write the store back to the origin, in chunk order, flush, and pass through.
    pub(crate) fn merge(&self) -> Result {
        let mut inner = self.inner.lock();
        if self.mode() == Mode::Passthrough {
            return Err(EINVAL);
        }
        // `ENODEV` if the target is being destroyed: its store goes with it.
        self.origin.with(|origin| -> Result {
            // Bios that arrive meanwhile wait for `inner`, so none can overtake the merge. A chunk
            // leaves the store only once it is on the origin: a failed merge can be retried.
            while let Some(cursor) = inner.store.cursor_front_mut() {
                let (&chunk, data) = cursor.current();
                if let Err(e) = origin.write_sync(&self.io, chunk * CHUNK_SECTORS, data) {
                    pr_err!(
                        "merge: writing chunk {} to the origin failed: {:?}\n",
                        chunk,
                        e
                    );
                    return Err(EIO);
                }
                cursor.remove_current();
                inner.chunks -= 1;
            }
            origin.flush_sync(&self.io)
        })??;
        self.set_mode(&mut inner, Mode::Passthrough);
        Ok(())
    }

    /// `drop`: discard the store and pass through.
    pub(crate) fn drop_store(&self) -> Result {
        let mut inner = self.inner.lock();
        if self.mode() == Mode::Passthrough {
            return Err(EINVAL);
        }
        inner.store = RBTree::new();
        inner.chunks = 0;
        self.set_mode(&mut inner, Mode::Passthrough);
        Ok(())
    }

    /// Takes over the snapshot of `old`, the target this one replaces in a reloaded table: its
    /// mode and its store, which `old` loses. Called from this target's resume, when neither maps
    /// a bio; does nothing if this target holds a snapshot of its own (then `old` merges its
    /// store back when it is destroyed). The two locks are taken one after the other, never
    /// nested.
    pub(crate) fn adopt(&self, old: &Shared) {
        {
            let to = self.inner.lock();
            if self.mode() != Mode::Passthrough || to.chunks != 0 {
                pr_warn!("reload: the new target holds a snapshot already\n");
                return;
            }
        }
        let (store, chunks, mode) = {
            let mut from = old.inner.lock();
            let mode = old.mode();
            if mode == Mode::Passthrough {
                return;
            }
            let store = core::mem::take(&mut from.store);
            let chunks = core::mem::take(&mut from.chunks);
            old.set_mode(&mut from, Mode::Passthrough);
            (store, chunks, mode)
        };
        let mut to = self.inner.lock();
        to.store = store;
        to.chunks = chunks;
        self.set_mode(&mut to, mode);
    }
}
