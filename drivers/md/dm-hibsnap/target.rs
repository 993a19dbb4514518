// SPDX-License-Identifier: GPL-2.0

//! One `hibsnap` target: its table line, the mapping of bios, its status and messages, and its
//! entry into the registry when its table is made live.

use crate::{
    registry::{
        Key,
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
        DevNum,
        DeviceId,
        DeviceVisitor,
        Devices,
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
        Arc,
        Mutex, //
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
#[pin_data(PinnedDrop)]
pub(crate) struct Hibsnap {
    /// The origin, for remapping bios.
    origin: DeviceId,
    shared: Arc<Shared>,
    /// The target's place in the registry.
    key: Key,
    /// Its entry, until the first resume puts it in the registry.
    #[pin]
    entry: Mutex<Option<RBTreeNode<Key, Arc<Shared>>>>,
    len: u64,
}

/// The origin of a target, for a callback.
fn origin(devices: &Devices, id: DeviceId) -> Result<&TargetDevice> {
    devices.get(id).ok_or(ENODEV)
}

impl Hibsnap {
    /// Maps a bio while a snapshot is held.
    pub(crate) fn map_snapshot(
        &self,
        origin: &TargetDevice,
        bio: &mut TargetBio,
        offset: u64,
    ) -> MapResult {
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
                origin.remap(bio, offset);
                MapResult::Remapped
            }
            (_, Op::Read) => match inner.store.get(&chunk) {
                Some(data) => {
                    bio.copy_from_slice(&data[..]);
                    shared.counters.served.add(1, ordering::Relaxed);
                    MapResult::Completed(Ok(()))
                }
                None => {
                    origin.remap(bio, offset);
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

#[pinned_drop]
impl PinnedDrop for Hibsnap {
    fn drop(self: Pin<&mut Self>) {
        // Out of the registry, unless a reloaded table's target has taken the place. The origin
        // is revoked after this, which waits for a merge in progress.
        if let Some(registry) = REGISTRY.as_ref() {
            let removed = {
                let mut registry = registry.lock();
                if registry
                    .get(&self.key)
                    .is_some_and(|shared| Arc::ptr_eq(shared, &self.shared))
                {
                    registry.remove(&self.key)
                } else {
                    None
                }
            };
            // Dropped outside the lock.
            drop(removed);
        }
        // A snapshot no reloaded table took over ends here: no write is lost, but the device's
        // snapshot is over (`dmsetup remove`, or a reload onto another origin, while it is held).
        if self.shared.mode() != Mode::Passthrough {
            pr_warn!(
                "{}: destroyed while a snapshot is held: merging it back\n",
                DevNum(self.key.0)
            );
            if let Err(e) = self.shared.merge() {
                pr_err!("{}: merge failed: {:?}\n", DevNum(self.key.0), e);
            }
        }
    }
}

#[vtable]
impl Target for Hibsnap {
    const NAME: &'static CStr = c"hibsnap";
    const VERSION: [u32; 3] = [0, 3, 0];

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
        // For merging, which the registry may do too.
        let shared_origin = setup.share_device(origin)?;
        let origin_devt = shared_origin.with(|dev| dev.device_number())?;
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
                origin: shared_origin,
                origin_devt,
                io,
                devt,
                held: Atomic::new(false),
                store_limit: store_mib * (1 << 20) / CHUNK_BYTES as u64,
                counters: Counters::new(),
            }),
            GFP_KERNEL,
        )?;
        if REGISTRY.as_ref().is_none() {
            return Err(CtrError::new(ENODEV, c"No registry"));
        }
        let key = (devt, setup.begin());
        // Allocated now: the resume that puts it in the registry cannot fail.
        let entry = RBTreeNode::new(key, shared.clone(), GFP_KERNEL)?;
        Ok(KBox::pin_init(
            try_pin_init!(Hibsnap {
                origin,
                shared,
                key,
                entry <- new_mutex!(Some(entry)),
                len: setup.len(),
            }? Error),
            GFP_KERNEL,
        )?)
    }

    fn map(&self, devices: &Devices, bio: &mut TargetBio, offset: u64) -> MapResult {
        let origin = match origin(devices, self.origin) {
            Ok(origin) => origin,
            Err(e) => return MapResult::Completed(Err(e)),
        };
        self.shared.counters.count(bio);
        if self.shared.mode() == Mode::Passthrough {
            origin.remap(bio, offset);
            return MapResult::Remapped;
        }
        self.map_snapshot(origin, bio, offset)
    }

    fn resume(&self, _devices: &Devices) {
        let Some(entry) = self.entry.lock().take() else {
            return;
        };
        let Some(registry) = REGISTRY.as_ref() else {
            return;
        };
        // The target this one replaces in place, if the table was reloaded: its snapshot goes on
        // here, if it is of the same origin. Otherwise the old target merges it back when it is
        // destroyed.
        let replaced = registry.lock().insert(entry);
        if let Some(replaced) = replaced {
            let (_, old) = replaced.to_key_value();
            if old.origin_devt == self.shared.origin_devt {
                self.shared.adopt(&old);
            }
        }
    }

    fn status(
        &self,
        devices: &Devices,
        kind: StatusType,
        out: &mut StatusWriter<'_>,
    ) -> fmt::Result {
        let origin = origin(devices, self.origin).map_err(|_| fmt::Error)?;
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
                origin.name(),
                (self.shared.store_limit * CHUNK_BYTES as u64) >> 20
            )),
            StatusType::Ima => out.write_fmt(fmt!(
                "target_name=hibsnap,target_version=0.3.0,origin={},mode={};",
                origin.name(),
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

    fn iterate_devices(&self, devices: &Devices, visitor: &mut DeviceVisitor) -> c_int {
        match devices.get(self.origin) {
            Some(origin) => visitor.visit(origin, 0, self.len),
            None => 0,
        }
    }

    fn io_hints(&self, limits: &mut QueueLimits<'_>) {
        limits.raise_logical_block_size(CHUNK_BYTES as u32);
    }
}
