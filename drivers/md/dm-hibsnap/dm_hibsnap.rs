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
//! The device has 4 KiB logical blocks, and bios are split at chunk boundaries, so that every
//! bio covers exactly one chunk and no write needs the origin's data around it.

use kernel::{
    block::bio::{
        Bio,
        Op, //
    },
    device_mapper::{
        self,
        Args,
        CtrError,
        DeviceVisitor,
        IoClient,
        MapResult,
        QueueLimits,
        StatusType,
        StatusWriter,
        Target,
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
        Mutex,
    },
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
        try_pin_init!(Self {
            registration <- device_mapper::Registration::new(module),
        })
    }
}

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

    fn count(&self, op: Op) {
        let counter = match op {
            Op::Read => &self.reads,
            Op::Write => &self.writes,
            Op::Flush => &self.flushes,
            Op::Discard | Op::WriteZeroes | Op::Other => &self.other,
        };
        counter.add(1, ordering::Relaxed);
    }
}

/// What the snapshot state holds, under the target's mutex.
struct Inner {
    mode: Mode,
    /// Chunks written since the snapshot, by chunk number.
    store: RBTree<u64, Chunk>,
    /// How many chunks `store` holds.
    chunks: u64,
}

/// One `hibsnap` target.
#[pin_data]
struct Hibsnap {
    origin: TargetDevice,
    io: IoClient,
    len: u64,
    /// The most chunks the store may hold.
    store_limit: u64,
    /// The mode, readable without the mutex: the passthrough fast path does not take it.
    mode: Atomic<i32>,
    #[pin]
    inner: Mutex<Inner>,
    counters: Counters,
}

impl Hibsnap {
    fn mode(&self) -> Mode {
        match self.mode.load(ordering::Acquire) {
            0 => Mode::Passthrough,
            1 => Mode::Snapshot,
            _ => Mode::Full,
        }
    }

    fn set_mode(&self, inner: &mut Inner, mode: Mode) {
        inner.mode = mode;
        self.mode.store(mode as i32, ordering::Release);
    }

    /// Maps a bio while a snapshot is held.
    fn map_snapshot(&self, bio: &mut Bio, offset: u64) -> MapResult {
        let mut inner = self.inner.lock();
        let chunk = offset / CHUNK_SECTORS;
        match (inner.mode, bio.op()) {
            // The merge finished while we waited for the lock.
            (Mode::Passthrough, _) => {
                drop(inner);
                self.origin.remap(bio, offset);
                MapResult::Remapped
            }
            (_, Op::Read) => match inner.store.get(&chunk) {
                Some(data) => {
                    bio.copy_from_slice(&data[..]);
                    self.counters.served.add(1, ordering::Relaxed);
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
            (Mode::Full, Op::Write) => {
                self.counters.refused.add(1, ordering::Relaxed);
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
                    self.counters.diverted.add(1, ordering::Relaxed);
                    return MapResult::Completed(Ok(()));
                }
                if inner.chunks >= self.store_limit {
                    self.set_mode(&mut inner, Mode::Full);
                    self.counters.refused.add(1, ordering::Relaxed);
                    pr_warn!("store full ({} chunks): failing writes\n", self.store_limit);
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
                        self.counters.diverted.add(1, ordering::Relaxed);
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

    /// `snapshot`: from now on the origin receives no write.
    fn snapshot(&self) -> Result {
        let mut inner = self.inner.lock();
        if inner.mode != Mode::Passthrough {
            pr_warn!("snapshot: a snapshot is already held\n");
            return Err(EBUSY);
        }
        self.set_mode(&mut inner, Mode::Snapshot);
        Ok(())
    }

    /// `merge`: write the store back to the origin, in chunk order, flush, and pass through.
    fn merge(&self) -> Result {
        let mut inner = self.inner.lock();
        if inner.mode == Mode::Passthrough {
            pr_warn!("merge: no snapshot is held\n");
            return Err(EINVAL);
        }
        // Bios that arrive meanwhile wait for the lock, so none can overtake the merge. A chunk
        // leaves the store only once it is on the origin: a failed merge can be retried.
        while let Some(cursor) = inner.store.cursor_front_mut() {
            let (&chunk, data) = cursor.current();
            if let Err(e) = self
                .origin
                .write_sync(&self.io, chunk * CHUNK_SECTORS, data)
            {
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
        self.origin.flush_sync(&self.io)?;
        self.set_mode(&mut inner, Mode::Passthrough);
        Ok(())
    }

    /// `drop`: discard the store and pass through.
    fn drop_store(&self) -> Result {
        let mut inner = self.inner.lock();
        if inner.mode == Mode::Passthrough {
            pr_warn!("drop: no snapshot is held\n");
            return Err(EINVAL);
        }
        inner.store = RBTree::new();
        inner.chunks = 0;
        self.set_mode(&mut inner, Mode::Passthrough);
        Ok(())
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
        let io = IoClient::new().map_err(|e| CtrError::new(e, c"Cannot create an I/O client"))?;
        setup
            .set_max_io_len(CHUNK_SECTORS)
            .map_err(|e| CtrError::new(e, c"Cannot split I/O at chunk boundaries"))?;
        setup.set_num_flush_bios(1);
        setup.set_num_discard_bios(1);
        let len = setup.len();
        Ok(KBox::try_pin_init(
            try_pin_init!(Hibsnap {
                origin,
                io,
                len,
                store_limit: store_mib * (1 << 20) / CHUNK_BYTES as u64,
                mode: Atomic::new(Mode::Passthrough as i32),
                inner <- new_mutex!(Inner {
                    mode: Mode::Passthrough,
                    store: RBTree::new(),
                    chunks: 0,
                }),
                counters: Counters::new(),
            }),
            GFP_KERNEL,
        )?)
    }

    fn map(&self, bio: &mut Bio, offset: u64) -> MapResult {
        self.counters.count(bio.op());
        if self.mode() == Mode::Passthrough {
            self.origin.remap(bio, offset);
            return MapResult::Remapped;
        }
        self.map_snapshot(bio, offset)
    }

    fn status(&self, kind: StatusType, out: &mut StatusWriter<'_>) -> fmt::Result {
        match kind {
            StatusType::Info => {
                let chunks = self.inner.lock().chunks;
                let c = &self.counters;
                out.write_fmt(fmt!(
                    "{} store {}/{} chunks reads {} writes {} flushes {} other {} diverted {} \
                     served {} refused {}",
                    self.mode().name(),
                    chunks,
                    self.store_limit,
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
                (self.store_limit * CHUNK_BYTES as u64) >> 20
            )),
            StatusType::Ima => out.write_fmt(fmt!(
                "target_name=hibsnap,target_version=0.2.0,origin={},mode={};",
                self.origin.name(),
                self.mode().name()
            )),
        }
    }

    fn message(&self, args: Args<'_>, _out: &mut StatusWriter<'_>) -> Result {
        if args.len() != 1 {
            pr_warn!("messages take no argument: snapshot, merge or drop\n");
            return Err(EINVAL);
        }
        match args.get(0).map(CStr::to_bytes) {
            Some(b"snapshot") => self.snapshot(),
            Some(b"merge") => self.merge(),
            Some(b"drop") => self.drop_store(),
            _ => {
                pr_warn!("unknown message: snapshot, merge or drop\n");
                Err(EINVAL)
            }
        }
    }

    fn iterate_devices(&self, visitor: &mut DeviceVisitor) -> c_int {
        visitor.visit(&self.origin, 0, self.len)
    }

    fn io_hints(&self, limits: &mut QueueLimits<'_>) {
        limits.raise_logical_block_size(CHUNK_BYTES as u32);
    }
}
