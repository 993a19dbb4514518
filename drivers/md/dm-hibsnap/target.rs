// SPDX-License-Identifier: GPL-2.0

//! One `hibsnap` target: its table line, the mapping of bios, its status and messages.

use crate::{
    registry::{
        NEXT_ID,
        REGISTRY, //
    },
    store::{
        Chunk,
        Inner,
        Mode,
        Shared,
        CHUNK_BYTES,
        CHUNK_SECTORS,
        DEFAULT_STORE_MIB, //
    },
};
use kernel::{
    block::bio::Op,
    device_mapper::{
        Args,
        CtrError,
        DeviceVisitor,
        IoClient,
        MapResult,
        QueueLimits,
        StatusType,
        StatusWriter,
        Target,
        TargetBio,
        TargetDevice,
        TargetSetup, //
    },
    ffi::c_int,
    fmt::{
        self,
        Write, //
    },
    new_mutex,
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNode, //
    },
    sync::{
        atomic::{
            ordering,
            Atomic, //
        },
        Arc, //
    }, //
};

/// Bio counters, for `dmsetup status`.
pub(crate) struct Counters {
    pub(crate) reads: Atomic<u64>,
    pub(crate) writes: Atomic<u64>,
    pub(crate) flushes: Atomic<u64>,
    pub(crate) other: Atomic<u64>,
    /// Writes diverted to the store.
    pub(crate) diverted: Atomic<u64>,
    /// Reads served from the store.
    pub(crate) served: Atomic<u64>,
    /// Writes failed because the store was full.
    pub(crate) refused: Atomic<u64>,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            reads: Atomic::new(0),
            writes: Atomic::new(0),
            flushes: Atomic::new(0),
            other: Atomic::new(0),
            diverted: Atomic::new(0),
            served: Atomic::new(0),
            refused: Atomic::new(0),
        }
    }

    pub(crate) fn count(&self, bio: &TargetBio) {
        let counter = match bio.op() {
            // Device-mapper sends a target a flush as an empty write with `REQ_PREFLUSH`.
            Op::Write if is_empty_flush(bio) => &self.flushes,
            Op::Read => &self.reads,
            Op::Write => &self.writes,
            Op::Flush => &self.flushes,
            Op::Discard | Op::WriteZeroes | Op::Other => &self.other,
        };
        counter.add(1, ordering::Relaxed);
    }
}

/// Whether `bio` is a flush as device-mapper sends it to a target: a write of no data with
/// `REQ_PREFLUSH` (for `fsync()`, or before a journal's commit block). Only origins with a
/// volatile write cache get them.
pub(crate) fn is_empty_flush(bio: &TargetBio) -> bool {
    bio.is_preflush() && bio.size() == 0
}

/// One `hibsnap` target.
pub(crate) struct Hibsnap {
    /// The origin, for remapping bios.
    origin: TargetDevice,
    shared: Arc<Shared>,
    /// The target's key in the registry.
    id: u64,
    len: u64,
}

impl Hibsnap {
    /// Maps a bio while a snapshot is held.
    pub(crate) fn map_snapshot(&self, bio: &mut TargetBio, offset: u64) -> MapResult {
        let shared = &*self.shared;
        // One chunk per read or write: device-mapper sends the rest of a longer one in a next
        // bio. The logical block size is the chunk size, so `offset` is at a chunk's start.
        if matches!(bio.op(), Op::Read | Op::Write) {
            if let Err(e) = bio.accept_partial(CHUNK_SECTORS as u32) {
                return MapResult::Completed(Err(e));
            }
        }
        let mut inner = shared.inner.lock();
        let chunk = offset / CHUNK_SECTORS;
        match (shared.mode(), bio.op()) {
            // The merge finished while we waited for the lock.
            (Mode::Passthrough, _) => {
                drop(inner);
                self.origin.remap(bio, offset);
                MapResult::Remapped
            }
            (_, Op::Read) => match inner.store.get(&chunk) {
                Some(data) => {
                    bio.copy_from_slice(&data[..]);
                    shared.counters.served.add(1, ordering::Relaxed);
                    MapResult::Completed(Ok(()))
                }
                None => {
                    self.origin.remap(bio, offset);
                    MapResult::Remapped
                }
            },
            // The store is the volatile destination of every write now: nothing to flush, and
            // a discard may leave the data as it is.
            (_, Op::Flush | Op::Discard) => MapResult::Completed(Ok(())),
            (_, Op::Write) if is_empty_flush(bio) => MapResult::Completed(Ok(())),
            (Mode::Full, Op::Write) => {
                shared.counters.refused.add(1, ordering::Relaxed);
                MapResult::Completed(Err(ENOSPC))
            }
            (_, Op::Write) if bio.size() as usize != CHUNK_BYTES || offset % CHUNK_SECTORS != 0 => {
                // Cannot happen with 4 KiB logical blocks and bios split at chunk boundaries.
                pr_warn!(
                    "write of {} bytes at sector {}: not one chunk\n",
                    bio.size(),
                    offset
                );
                MapResult::Completed(Err(EIO))
            }
            (_, Op::Write) => {
                if let Some(data) = inner.store.get_mut(&chunk) {
                    bio.copy_to_slice(&mut data[..]);
                    shared.counters.diverted.add(1, ordering::Relaxed);
                    return MapResult::Completed(Ok(()));
                }
                if inner.chunks >= shared.store_limit {
                    shared.set_mode(&mut inner, Mode::Full);
                    shared.counters.refused.add(1, ordering::Relaxed);
                    pr_warn!(
                        "store full ({} chunks): failing writes\n",
                        shared.store_limit
                    );
                    return MapResult::Completed(Err(ENOSPC));
                }
                // The chunk is new: a whole chunk, since bios are split at chunk boundaries and
                // the logical block size is the chunk size.
                let node = KBox::init(pin_init::zeroed::<[u8; CHUNK_BYTES]>(), GFP_NOIO).and_then(
                    |mut data: Chunk| {
                        bio.copy_to_slice(&mut data[..]);
                        RBTreeNode::new(chunk, data, GFP_NOIO).map_err(|_| ENOMEM)
                    },
                );
                match node {
                    Ok(node) => {
                        inner.store.insert(node);
                        inner.chunks += 1;
                        shared.counters.diverted.add(1, ordering::Relaxed);
                        MapResult::Completed(Ok(()))
                    }
                    Err(e) => MapResult::Completed(Err(e)),
                }
            }
            // Write-zeroes is not advertised, so the block layer sends zeroed writes instead;
            // nothing else is expected here.
            (_, Op::WriteZeroes | Op::Other) => MapResult::Completed(Err(EOPNOTSUPP)),
        }
    }
}

impl Drop for Hibsnap {
    fn drop(&mut self) {
        // Waits for a merge through the registry to finish; the origin is put now, while the
        // `dm_target` it belongs to still exists.
        drop(self.shared.merge_origin.lock().take());
        if let Some(registry) = REGISTRY.as_ref() {
            let removed = registry.lock().remove(&self.id);
            // Dropped outside the lock.
            drop(removed);
        }
    }
}

#[vtable]
impl Target for Hibsnap {
    const NAME: &'static CStr = c"hibsnap";
    const VERSION: [u32; 3] = [0, 2, 0];

    fn new(setup: &mut TargetSetup<'_>, args: Args<'_>) -> Result<Pin<KBox<Self>>, CtrError> {
        if args.is_empty() || args.len() > 2 {
            return Err(CtrError::new(
                EINVAL,
                c"Invalid argument count: <origin_dev> [<store_limit_mib>]",
            ));
        }
        let store_mib = match args.get(1) {
            None => DEFAULT_STORE_MIB,
            Some(arg) => arg
                .to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|&mib| mib > 0 && mib <= 1 << 20)
                .ok_or(CtrError::new(
                    EINVAL,
                    c"Invalid store limit (MiB, 1 to 1048576)",
                ))?,
        };
        if setup.len() % CHUNK_SECTORS != 0 {
            return Err(CtrError::new(EINVAL, c"Length is not a multiple of 4 KiB"));
        }
        let path = args
            .get(0)
            .ok_or(CtrError::new(EINVAL, c"Missing origin device"))?;
        let origin = setup
            .get_device(path)
            .map_err(|e| CtrError::new(e, c"Origin device lookup failed"))?;
        // A second reference, for merging, which the registry may do too.
        let merge_origin = setup
            .get_device(path)
            .map_err(|e| CtrError::new(e, c"Origin device lookup failed"))?;
        let io = IoClient::new().map_err(|e| CtrError::new(e, c"Cannot create an I/O client"))?;
        setup.set_num_flush_bios(1);
        setup.set_num_discard_bios(1);
        let devt = setup.device_number();
        let shared = Arc::pin_init(
            try_pin_init!(Shared {
                mode: Atomic::new(Mode::Passthrough as i32),
                inner <- new_mutex!(Inner {
                    store: RBTree::new(),
                    chunks: 0,
                }),
                merge_origin <- new_mutex!(Some(merge_origin)),
                io,
                devt,
                store_limit: store_mib * (1 << 20) / CHUNK_BYTES as u64,
                counters: Counters::new(),
            }),
            GFP_KERNEL,
        )?;
        let registry = REGISTRY
            .as_ref()
            .ok_or(CtrError::new(ENODEV, c"No registry"))?;
        let id = NEXT_ID.fetch_add(1, ordering::Relaxed);
        let node = RBTreeNode::new(id, shared.clone(), GFP_KERNEL)?;
        registry.lock().insert(node);
        Ok(KBox::pin(
            Hibsnap {
                origin,
                shared,
                id,
                len: setup.len(),
            },
            GFP_KERNEL,
        )?)
    }

    fn map(&self, bio: &mut TargetBio, offset: u64) -> MapResult {
        self.shared.counters.count(bio);
        if self.shared.mode() == Mode::Passthrough {
            self.origin.remap(bio, offset);
            return MapResult::Remapped;
        }
        self.map_snapshot(bio, offset)
    }

    fn status(&self, kind: StatusType, out: &mut StatusWriter<'_>) -> fmt::Result {
        match kind {
            StatusType::Info => {
                let shared = &*self.shared;
                let chunks = shared.inner.lock().chunks;
                let c = &shared.counters;
                out.write_fmt(fmt!(
                    "{} store {}/{} chunks reads {} writes {} flushes {} other {} diverted {} \
                     served {} refused {}",
                    shared.mode().name(),
                    chunks,
                    shared.store_limit,
                    c.reads.load(ordering::Relaxed),
                    c.writes.load(ordering::Relaxed),
                    c.flushes.load(ordering::Relaxed),
                    c.other.load(ordering::Relaxed),
                    c.diverted.load(ordering::Relaxed),
                    c.served.load(ordering::Relaxed),
                    c.refused.load(ordering::Relaxed)
                ))
            }
            StatusType::Table => out.write_fmt(fmt!(
                "{} {}",
                self.origin.name(),
                (self.shared.store_limit * CHUNK_BYTES as u64) >> 20
            )),
            StatusType::Ima => out.write_fmt(fmt!(
                "target_name=hibsnap,target_version=0.2.0,origin={},mode={};",
                self.origin.name(),
                self.shared.mode().name()
            )),
        }
    }

    fn message(&self, args: Args<'_>, _out: &mut StatusWriter<'_>) -> Result {
        if args.len() != 1 {
            pr_warn!("messages take no argument: snapshot, merge or drop\n");
            return Err(EINVAL);
        }
        let shared = &self.shared;
        let (what, result) = match args.get(0).map(CStr::to_bytes) {
            Some(b"snapshot") => ("snapshot", shared.snapshot()),
            Some(b"merge") => ("merge", shared.merge()),
            Some(b"drop") => ("drop", shared.drop_store()),
            _ => {
                pr_warn!("unknown message: snapshot, merge or drop\n");
                return Err(EINVAL);
            }
        };
        match result {
            Err(e) if e == EBUSY => pr_warn!("{}: a snapshot is already held\n", what),
            Err(e) if e == EINVAL => pr_warn!("{}: no snapshot is held\n", what),
            _ => (),
        }
        result
    }

    fn iterate_devices(&self, visitor: &mut DeviceVisitor) -> c_int {
        visitor.visit(&self.origin, 0, self.len)
    }

    fn io_hints(&self, limits: &mut QueueLimits<'_>) {
        limits.raise_logical_block_size(CHUNK_BYTES as u32);
    }
}
