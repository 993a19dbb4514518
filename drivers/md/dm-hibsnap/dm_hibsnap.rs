// SPDX-License-Identifier: GPL-2.0

//! dm-hibsnap: the device-mapper target that keeps block devices consistent with a hibsnap image.
//!
//! Table: `<start> <len> hibsnap <origin_dev> [<store_limit_mib>]`.
//!
//! In the passthrough state every bio is remapped to the origin. After the `snapshot` message,
//! the origin receives no write: writes go to a volatile store in RAM, in 4 KiB chunks, and reads
//! of chunks the store holds are served from it. `merge` writes the store back to the origin and
//! returns to passthrough (the path of an aborted hibernation: no write is lost); `drop` discards
//! the store and returns to passthrough (the path of a resumed system, whose disk must be the
//! disk at the atomic point). See `Documentation/power/hibsnap.rst`.
//!
//! The device has 4 KiB logical blocks, and during a snapshot the target accepts one chunk of a bio
//! at a time (device-mapper sends the rest in a next bio), so that every write it handles covers
//! exactly one chunk and needs no data of the origin around it. In passthrough, bios are remapped
//! whole.
//!
//! Every target is also in a registry, through which `snapshot_kernel(2)` snapshots all of them at
//! once at the atomic point ([`dm_hibsnap_snapshot_all`], a lock-free mode switch that is safe with
//! interrupts off) and ends them afterwards ([`dm_hibsnap_end_all`]).

use kernel::{
    block::bio::Op,
    device_mapper::{
        self,
        Args,
        CtrError,
        DevNum,
        DeviceVisitor,
        IoClient,
        MapResult,
        MappedDevice,
        QueueLimits,
        StatusType,
        StatusWriter,
        SuspendedDevice,
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
    new_spinlock,
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
        Mutex,
        SetOnce,
        SpinLock, //
    }, //
};

module! {
    type: DmHibsnap,
    name: "dm_hibsnap",
    authors: ["The hibsnap developers"],
    description: "device-mapper target for hibsnap",
    license: "GPL",
}

#[pin_data]
struct DmHibsnap {
    #[pin]
    registration: device_mapper::Registration<Hibsnap>,
}

impl kernel::InPlaceModule for DmHibsnap {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // The registry exists before the target type does: no target can miss it.
        let registry = KBox::pin_init(new_spinlock!(RBTree::new()), GFP_KERNEL);
        let suspended = KBox::pin_init(new_mutex!(KVec::new()), GFP_KERNEL);
        let ready = registry
            .map(|r| REGISTRY.populate(r))
            .and_then(|ready| suspended.map(|s| ready && SUSPENDED.populate(s)));
        try_pin_init!(Self {
            registration <- {
                match ready {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(EBUSY),
                    Err(e) => Err(e),
                }?;
                device_mapper::Registration::new(module)
            },
        })
    }
}

/// Every live target's shared state, by target id.
type Registry = SpinLock<RBTree<u64, Arc<Shared>>>;

/// The registry, set up once by the module's init.
static REGISTRY: SetOnce<Pin<KBox<Registry>>> = SetOnce::new();

/// The devices [`suspend_all`] suspended, until [`resume_all`].
static SUSPENDED: SetOnce<Pin<KBox<Mutex<KVec<SuspendedDevice>>>>> = SetOnce::new();

/// The id the next target gets in the registry.
static NEXT_ID: Atomic<u64> = Atomic::new(0);

/// The size of a store chunk, and the device's logical block size.
const CHUNK_BYTES: usize = 4096;
/// Sectors per chunk.
const CHUNK_SECTORS: u64 = (CHUNK_BYTES / 512) as u64;
/// The store limit when the table gives none, in MiB.
const DEFAULT_STORE_MIB: u64 = 256;

/// One chunk of data, in a `kmalloc` allocation (`dm_io()` writes it back from there).
type Chunk = KBox<[u8; CHUNK_BYTES]>;

/// The target's state.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(i32)]
enum Mode {
    /// Every bio goes to the origin.
    Passthrough = 0,
    /// Writes go to the store; the origin receives none.
    Snapshot = 1,
    /// A write to the store found it full: writes fail until `merge` or `drop`.
    Full = 2,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Passthrough => "passthrough",
            Mode::Snapshot => "snapshot",
            Mode::Full => "full",
        }
    }
}

/// Bio counters, for `dmsetup status`.
struct Counters {
    reads: Atomic<u64>,
    writes: Atomic<u64>,
    flushes: Atomic<u64>,
    other: Atomic<u64>,
    /// Writes diverted to the store.
    diverted: Atomic<u64>,
    /// Reads served from the store.
    served: Atomic<u64>,
    /// Writes failed because the store was full.
    refused: Atomic<u64>,
}

impl Counters {
    fn new() -> Self {
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

    fn count(&self, bio: &TargetBio) {
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
fn is_empty_flush(bio: &TargetBio) -> bool {
    bio.is_preflush() && bio.size() == 0
}

/// What the snapshot state holds, under the target's mutex.
struct Inner {
    /// Chunks written since the snapshot, by chunk number.
    store: RBTree<u64, Chunk>,
    /// How many chunks `store` holds.
    chunks: u64,
}

/// What a target shares with the registry: its mode, its store, and (while the target exists)
/// the origin it merges into.
#[pin_data]
struct Shared {
    /// The mode. Switching to [`Mode::Snapshot`] takes no lock, so that it can be done at the
    /// atomic point with interrupts off; every other switch is made under `inner`.
    mode: Atomic<i32>,
    #[pin]
    inner: Mutex<Inner>,
    /// The origin, for `merge`. The target takes it out when it is destroyed, so that it is never
    /// put after its `dm_target` is gone; a merge in progress holds the lock, and the target's
    /// destruction waits for it.
    #[pin]
    merge_origin: Mutex<Option<TargetDevice>>,
    io: IoClient,
    /// The device number of the device-mapper device the target is in.
    devt: u32,
    /// The most chunks the store may hold.
    store_limit: u64,
    counters: Counters,
}

impl Shared {
    fn mode(&self) -> Mode {
        match self.mode.load(ordering::Acquire) {
            0 => Mode::Passthrough,
            1 => Mode::Snapshot,
            _ => Mode::Full,
        }
    }

    /// Switches the mode; `inner` is held, as every switch but [`Shared::snapshot`] requires.
    fn set_mode(&self, _inner: &mut Inner, mode: Mode) {
        self.mode.store(mode as i32, ordering::Release);
    }

    /// `snapshot`: from now on the origin receives no write. Takes no lock.
    fn snapshot(&self) -> Result {
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
    fn merge(&self) -> Result {
        let mut inner = self.inner.lock();
        if self.mode() == Mode::Passthrough {
            return Err(EINVAL);
        }
        let origin = self.merge_origin.lock();
        let Some(origin) = origin.as_ref() else {
            // The target is being destroyed: its store goes with it.
            return Err(ENODEV);
        };
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
        origin.flush_sync(&self.io)?;
        self.set_mode(&mut inner, Mode::Passthrough);
        Ok(())
    }

    /// `drop`: discard the store and pass through.
    fn drop_store(&self) -> Result {
        let mut inner = self.inner.lock();
        if self.mode() == Mode::Passthrough {
            return Err(EINVAL);
        }
        inner.store = RBTree::new();
        inner.chunks = 0;
        self.set_mode(&mut inner, Mode::Passthrough);
        Ok(())
    }
}

/// One `hibsnap` target.
struct Hibsnap {
    /// The origin, for remapping bios.
    origin: TargetDevice,
    shared: Arc<Shared>,
    /// The target's key in the registry.
    id: u64,
    len: u64,
}

impl Hibsnap {
    /// Maps a bio while a snapshot is held.
    fn map_snapshot(&self, bio: &mut TargetBio, offset: u64) -> MapResult {
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

/// Suspends every device-mapper device that has a hibsnap target, each once, with its filesystem
/// frozen (`dmsetup suspend`): the filesystem is synced and takes no new write, and no bio is in
/// flight until [`resume_all`]. Sleeps. Returns the number of devices; on failure the devices
/// suspended by the call are resumed, and a device that was suspended already fails it with
/// `EBUSY`.
fn suspend_all() -> Result<u32> {
    let mut held = SUSPENDED.as_ref().ok_or(ENODEV)?.lock();
    if !held.is_empty() {
        return Err(EBUSY);
    }
    let devts = {
        let registry = REGISTRY.as_ref().ok_or(ENODEV)?.lock();
        let mut devts = KVec::with_capacity(registry.values().count(), GFP_ATOMIC)?;
        for shared in registry.values() {
            if !devts.contains(&shared.devt) {
                devts.push(shared.devt, GFP_ATOMIC)?;
            }
        }
        devts
    };
    held.reserve(devts.len(), GFP_KERNEL)?;
    for devt in devts {
        // A device removed meanwhile has nothing left to suspend.
        let Some(md) = MappedDevice::get(devt) else {
            continue;
        };
        match md.suspend_with_lockfs() {
            // Within the capacity reserved above.
            Ok(suspended) => held.push(suspended, GFP_KERNEL)?,
            Err(e) => {
                pr_err!(
                    "cannot suspend device {} with its filesystem frozen: {:?}\n",
                    DevNum(devt),
                    e
                );
                held.clear();
                return Err(if e == EINVAL { EBUSY } else { e });
            }
        }
    }
    Ok(held.len() as u32)
}

/// Resumes the devices [`suspend_all`] suspended, and thaws their filesystems. Returns how many.
fn resume_all() -> u32 {
    let Some(held) = SUSPENDED.as_ref() else {
        return 0;
    };
    let mut held = held.lock();
    let n = held.len() as u32;
    held.clear();
    n
}

/// Snapshots every hibsnap target at once: their origins receive no write from now on.
///
/// Takes no sleeping lock and allocates nothing, so that it can run at the atomic point of a
/// hibernation, on one CPU with interrupts off; the devices must be quiesced (no bio in flight).
/// Returns the number of targets, or `EBUSY` if one already holds a snapshot (then none is
/// switched by the call).
fn snapshot_all() -> Result<u32> {
    let registry = REGISTRY.as_ref().ok_or(ENODEV)?.lock();
    let mut n = 0;
    for shared in registry.values() {
        if shared.snapshot().is_err() {
            // Undo the ones switched by this call: nothing was written to them meanwhile.
            for undo in registry.values().take(n) {
                undo.mode.store(Mode::Passthrough as i32, ordering::Release);
            }
            return Err(EBUSY);
        }
        n += 1;
    }
    Ok(n as u32)
}

/// Ends the snapshot of every hibsnap target that holds one: `merge` (an aborted hibernation) or
/// `drop` (a resumed system). Sleeps. Returns the number of targets ended, or the first error
/// after trying them all.
fn end_all(merge: bool) -> Result<u32> {
    let targets = {
        let registry = REGISTRY.as_ref().ok_or(ENODEV)?.lock();
        let mut targets = KVec::with_capacity(registry.values().count(), GFP_ATOMIC)?;
        for shared in registry.values() {
            targets.push(shared.clone(), GFP_ATOMIC)?;
        }
        targets
    };
    let mut ended = 0;
    let mut first_error = None;
    for shared in &targets {
        if shared.mode() == Mode::Passthrough {
            continue;
        }
        match if merge {
            shared.merge()
        } else {
            shared.drop_store()
        } {
            Ok(()) => ended += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(ended),
    }
}

/// C entry point of [`snapshot_all`] for `snapshot_kernel(2)`: the number of targets switched, or
/// a negative errno.
///
/// # Safety
///
/// Always safe to call; it is `unsafe` only because `#[export]` requires it.
#[export]
pub unsafe extern "C" fn dm_hibsnap_snapshot_all() -> c_int {
    match snapshot_all() {
        Ok(n) => n as c_int,
        Err(e) => e.to_errno(),
    }
}

/// C entry point of [`suspend_all`] for `snapshot_kernel(2)`: the number of devices suspended, or
/// a negative errno.
///
/// # Safety
///
/// Always safe to call from process context; it is `unsafe` only because `#[export]` requires it.
#[export]
pub unsafe extern "C" fn dm_hibsnap_suspend_all() -> c_int {
    match suspend_all() {
        Ok(n) => n as c_int,
        Err(e) => e.to_errno(),
    }
}

/// C entry point of [`resume_all`] for `snapshot_kernel(2)`: the number of devices resumed.
///
/// # Safety
///
/// Always safe to call from process context; it is `unsafe` only because `#[export]` requires it.
#[export]
pub unsafe extern "C" fn dm_hibsnap_resume_all() -> c_int {
    resume_all() as c_int
}

/// Whether `devt` is a device-mapper device with a hibsnap target: its writes are snapshotted.
fn has_device(devt: u32) -> bool {
    REGISTRY
        .as_ref()
        .is_some_and(|registry| registry.lock().values().any(|shared| shared.devt == devt))
}

/// C entry point of [`has_device`] for `snapshot_kernel(2)`.
///
/// # Safety
///
/// Always safe to call from process context; it is `unsafe` only because `#[export]` requires it.
#[export]
pub unsafe extern "C" fn dm_hibsnap_has_device(devt: u32) -> bool {
    has_device(devt)
}

/// C entry point of [`end_all`] for `snapshot_kernel(2)`: the number of targets ended, or a
/// negative errno.
///
/// # Safety
///
/// Always safe to call from process context; it is `unsafe` only because `#[export]` requires it.
#[export]
pub unsafe extern "C" fn dm_hibsnap_end_all(merge: bool) -> c_int {
    match end_all(merge) {
        Ok(n) => n as c_int,
        Err(e) => e.to_errno(),
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

#[kunit_tests(dm_hibsnap)]
mod tests {
    use super::*;

    /// Whether every registered target is in `mode`.
    fn all_in(mode: Mode) -> Result<bool> {
        let registry = REGISTRY.as_ref().ok_or(ENODEV)?.lock();
        let all = registry.values().all(|shared| shared.mode() == mode);
        Ok(all)
    }

    /// The in-kernel interface of `snapshot_kernel(2)`, on the target the test kernel creates at
    /// boot (`dm-mod.create=` in the harness: a `hibsnap` device on a RAM disk).
    #[test]
    fn registry_snapshots_and_ends_every_target() -> Result {
        let n = REGISTRY.as_ref().ok_or(ENODEV)?.lock().values().count() as u32;
        // No device means no `dm-mod.create=`: the test needs the one it makes.
        assert!(n >= 1);

        assert_eq!(snapshot_all()?, n);
        assert!(all_in(Mode::Snapshot)?);
        // A second snapshot is refused and changes nothing.
        assert_eq!(snapshot_all(), Err(EBUSY));
        assert!(all_in(Mode::Snapshot)?);
        // Drop: the resumed-system path.
        assert_eq!(end_all(false)?, n);
        assert!(all_in(Mode::Passthrough)?);
        assert_eq!(end_all(false)?, 0);
        // Merge: the abort path (an empty store: only the origin's flush).
        assert_eq!(snapshot_all()?, n);
        assert_eq!(end_all(true)?, n);
        assert!(all_in(Mode::Passthrough)?);
        Ok(())
    }
}
