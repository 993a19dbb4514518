// SPDX-License-Identifier: GPL-2.0

//! Device-mapper targets.
//!
//! A target type is a [`Target`] implementation registered with a [`Registration`]. Each table
//! line naming it constructs one target object ([`Target::new`]), which device-mapper keeps until
//! the table is destroyed, and calls with the bios it maps ([`Target::map`]), for `dmsetup
//! status` and `dmsetup table` ([`Target::status`]) and for `dmsetup message`
//! ([`Target::message`]).
//!
//! C header: [`include/linux/device-mapper.h`](srctree/include/linux/device-mapper.h)

use crate::{
    alloc::{
        AllocError,
        KBox, //
    },
    bindings,
    block::bio::{
        Bio,
        Op, //
    },
    error::{
        to_result,
        VTABLE_DEFAULT_ERROR, //
    },
    ffi::{
        c_char,
        c_int,
        c_uint,
        c_void, //
    },
    fmt,
    prelude::*,
    str::CStr,
    types::Opaque, //
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};

/// An error from a target's constructor: an errno and the message `dmsetup` shows.
pub struct CtrError {
    /// The errno returned to userspace.
    pub err: Error,
    /// The message logged by device-mapper, e.g. "Invalid argument count".
    pub msg: &'static CStr,
}

impl CtrError {
    /// Creates an error with errno `err` and message `msg`.
    pub const fn new(err: Error, msg: &'static CStr) -> Self {
        CtrError { err, msg }
    }
}

impl From<AllocError> for CtrError {
    fn from(_: AllocError) -> Self {
        CtrError {
            err: ENOMEM,
            msg: c"Cannot allocate the target",
        }
    }
}

impl From<Error> for CtrError {
    fn from(err: Error) -> Self {
        CtrError {
            err,
            msg: c"Target construction failed",
        }
    }
}

/// A bio device-mapper lends to [`Target::map`]: a [`Bio`], which the target may also cut short.
#[repr(transparent)]
pub struct TargetBio(Bio);

impl TargetBio {
    /// Accepts only the first `sectors` sectors of the bio: device-mapper sends the rest to the
    /// target in a next bio (`dm_accept_partial_bio()`).
    ///
    /// Only reads and writes can be cut, and not atomic writes or writes to a zoned device:
    /// `EINVAL` for those, and the bio is left whole. A `sectors` of zero or of the bio's length
    /// or more leaves it whole too.
    pub fn accept_partial(&mut self, sectors: u32) -> Result {
        let bio = &self.0;
        let len = bio.size() >> 9;
        if sectors == 0 || sectors >= len {
            return Ok(());
        }
        let raw = bio.as_raw();
        // SAFETY: The bio is valid while it is lent to the map function.
        let (opf, bdev) = unsafe { ((*raw).bi_opf, (*raw).bi_bdev) };
        let op = bio.op();
        // SAFETY: `bdev` is the bio's device, valid while the bio is.
        let zoned = unsafe { bindings::bdev_is_zoned(bdev) };
        if !matches!(op, Op::Read | Op::Write)
            || opf & bindings::REQ_ATOMIC != 0
            || (zoned && op == Op::Write)
        {
            return Err(EINVAL);
        }
        // SAFETY: The bio is a device-mapper clone being mapped (the only way to get a
        // `TargetBio`), a plain read or write, not atomic, not a zoned write, not a duplicate
        // (those are flushes, discards and the like), and `sectors` is less than its length:
        // every condition of `dm_accept_partial_bio()`.
        unsafe { bindings::dm_accept_partial_bio(raw, sectors) };
        Ok(())
    }
}

impl core::ops::Deref for TargetBio {
    type Target = Bio;

    fn deref(&self) -> &Bio {
        &self.0
    }
}

impl core::ops::DerefMut for TargetBio {
    fn deref_mut(&mut self) -> &mut Bio {
        &mut self.0
    }
}

/// What [`Target::map`] did with a bio.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MapResult {
    /// The bio was remapped (device and sector); device-mapper submits it.
    Remapped,
    /// The target handled the bio itself: complete it now, with this result.
    Completed(Result),
    /// Fail the bio with an I/O error.
    Kill,
}

/// Which status `dmsetup` asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StatusType {
    /// `dmsetup status`: the target's state and counters.
    Info,
    /// `dmsetup table`: the table line's arguments.
    Table,
    /// The IMA measurement string.
    Ima,
}

/// The arguments of a table line or a message, as NUL-terminated strings.
#[derive(Copy, Clone)]
pub struct Args<'a> {
    argv: &'a [*mut c_char],
}

impl<'a> Args<'a> {
    /// # Safety
    ///
    /// `argv` must point to `argc` valid NUL-terminated strings that live for `'a`.
    unsafe fn from_raw(argc: c_uint, argv: *mut *mut c_char) -> Self {
        let argv = if argc == 0 || argv.is_null() {
            &[]
        } else {
            // SAFETY: The caller guarantees `argv` has `argc` valid entries for `'a`.
            unsafe { core::slice::from_raw_parts(argv, argc as usize) }
        };
        Args { argv }
    }

    /// Returns the number of arguments.
    pub fn len(&self) -> usize {
        self.argv.len()
    }

    /// Returns whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.argv.is_empty()
    }

    /// Returns argument `i`.
    pub fn get(&self, i: usize) -> Option<&'a CStr> {
        // SAFETY: By the invariants of `from_raw`, every entry is a valid string for `'a`.
        self.argv.get(i).map(|&p| unsafe { CStr::from_char_ptr(p) })
    }
}

/// Where a target writes its status or a message reply; text beyond the buffer is cut, as with
/// `DMEMIT`.
pub struct StatusWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl StatusWriter<'_> {
    /// Returns whether anything was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Write for StatusWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the terminating NUL.
        let room = self.buf.len().saturating_sub(self.len + 1);
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if let Some(nul) = self.buf.get_mut(self.len) {
            *nul = 0;
        }
        Ok(())
    }
}

/// The target being constructed: lets the constructor open devices and set limits.
pub struct TargetSetup<'a> {
    ti: NonNull<bindings::dm_target>,
    _p: PhantomData<&'a mut bindings::dm_target>,
}

impl TargetSetup<'_> {
    /// Returns the length of the target in sectors.
    pub fn len(&self) -> u64 {
        // SAFETY: `ti` is valid during the constructor.
        unsafe { (*self.ti.as_ptr()).len }
    }

    /// Returns whether the target has no sectors.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens the device `path` (a path or `major:minor`) with the table's mode.
    pub fn get_device(&mut self, path: &CStr) -> Result<TargetDevice> {
        let ti = self.ti.as_ptr();
        let mut dev: *mut bindings::dm_dev = core::ptr::null_mut();
        // SAFETY: `ti` is valid during the constructor and belongs to a table; `path` is a valid
        // string; `dev` is written on success.
        to_result(unsafe {
            bindings::dm_get_device(
                ti,
                path.as_char_ptr(),
                bindings::dm_table_get_mode((*ti).table),
                &mut dev,
            )
        })?;
        // INVARIANT: `dm_get_device` succeeded, so `dev` is an open device of `ti`.
        Ok(TargetDevice {
            ti: self.ti,
            dev: NonNull::new(dev).ok_or(EINVAL)?,
        })
    }

    /// Asks device-mapper to pass one flush bio per flush to [`Target::map`].
    pub fn set_num_flush_bios(&mut self, n: u32) {
        // SAFETY: `ti` is valid and ours to set up during the constructor.
        unsafe { (*self.ti.as_ptr()).num_flush_bios = n }
    }

    /// Asks device-mapper to pass discards to [`Target::map`].
    pub fn set_num_discard_bios(&mut self, n: u32) {
        // SAFETY: `ti` is valid and ours to set up during the constructor.
        unsafe { (*self.ti.as_ptr()).num_discard_bios = n }
    }

    /// Returns the device number of the device-mapper device whose table this target is in
    /// (its disk, `dm-N`), with which [`MappedDevice::get`] finds the device again later.
    pub fn device_number(&self) -> u32 {
        // SAFETY: `ti` is valid during the constructor; so are its table, the table's mapped
        // device and that device's disk.
        unsafe {
            disk_devt(bindings::dm_disk(bindings::dm_table_get_md(
                (*self.ti.as_ptr()).table,
            )))
        }
    }

    /// Splits bios so that none crosses a multiple of `sectors` from the target's start.
    pub fn set_max_io_len(&mut self, sectors: u64) -> Result {
        // SAFETY: `ti` is valid and ours to set up during the constructor.
        to_result(unsafe { bindings::dm_set_target_max_io_len(self.ti.as_ptr(), sectors) })
    }
}

/// The device number of a mapped device's disk, `disk_devt()`.
///
/// Computed from the numbers device-mapper gives the disk when it allocates it: `part0->bd_dev`
/// is only set once the disk is added, at the first table load, after the first targets are
/// constructed.
///
/// # Safety
///
/// `disk` must be the disk of a live mapped device.
unsafe fn disk_devt(disk: *mut bindings::gendisk) -> u32 {
    // SAFETY: The caller guarantees `disk` is valid; device-mapper sets `major` and
    // `first_minor` when it allocates the disk and never changes them.
    let (major, minor) = unsafe { ((*disk).major as u32, (*disk).first_minor as u32) };
    (major << bindings::MINORBITS) | minor
}

/// A block device number (`dev_t`), shown as `major:minor`, as `dmsetup` shows devices.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DevNum(pub u32);

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minor_mask = (1 << bindings::MINORBITS) - 1;
        f.write_fmt(fmt!(
            "{}:{}",
            self.0 >> bindings::MINORBITS,
            self.0 & minor_mask
        ))
    }
}

/// A reference to a device-mapper device (`struct mapped_device`), put when dropped.
///
/// # Invariants
///
/// `md` is a mapped device on which this object holds a reference (`dm_get_md`).
pub struct MappedDevice {
    md: NonNull<bindings::mapped_device>,
}

// SAFETY: A reference to a mapped device may be used and put from any task.
unsafe impl Send for MappedDevice {}
// SAFETY: The methods taking `&self` only read what does not change while the device exists.
unsafe impl Sync for MappedDevice {}

impl MappedDevice {
    /// Takes a reference to the device-mapper device whose disk has the device number `devt`;
    /// `None` if there is none, or if it is being removed.
    pub fn get(devt: u32) -> Option<Self> {
        // SAFETY: `dm_get_md` looks the number up under its own lock and returns a device on
        // which it took a reference, or null.
        let md = unsafe { bindings::dm_get_md(devt) };
        // INVARIANT: `dm_get_md` took the reference.
        NonNull::new(md).map(|md| MappedDevice { md })
    }

    /// Returns the device number of its disk (`dm-N`).
    pub fn device_number(&self) -> u32 {
        // SAFETY: The reference keeps `md` and its disk alive.
        unsafe { disk_devt(bindings::dm_disk(self.md.as_ptr())) }
    }

    /// Suspends the device as `dmsetup suspend` does: the filesystem on it, if any, is frozen
    /// (synced, and new writes wait), then the bios in flight are waited for, and new bios are
    /// held back until the device is resumed. Sleeps.
    ///
    /// Fails with `EINVAL` if the device is suspended already, `EINTR` if a signal interrupts
    /// the wait, or with the error of freezing the filesystem; the device is then as it was.
    pub fn suspend_with_lockfs(self) -> Result<SuspendedDevice> {
        // SAFETY: The reference keeps `md` alive; `dm_suspend` takes the device's suspend lock
        // itself and undoes its own steps on failure.
        to_result(unsafe {
            bindings::dm_suspend(self.md.as_ptr(), bindings::DM_SUSPEND_LOCKFS_FLAG)
        })?;
        Ok(SuspendedDevice { md: self })
    }
}

impl Drop for MappedDevice {
    fn drop(&mut self) {
        // SAFETY: By the type invariants this object holds a reference, put here once.
        unsafe { bindings::dm_put(self.md.as_ptr()) };
    }
}

/// A device-mapper device suspended by [`MappedDevice::suspend_with_lockfs`]; dropping it resumes
/// the device, then thaws its filesystem.
pub struct SuspendedDevice {
    md: MappedDevice,
}

impl SuspendedDevice {
    /// Returns the device number of its disk (`dm-N`).
    pub fn device_number(&self) -> u32 {
        self.md.device_number()
    }
}

impl Drop for SuspendedDevice {
    fn drop(&mut self) {
        // SAFETY: The reference keeps `md` alive; `dm_resume` takes the suspend lock itself.
        let ret = unsafe { bindings::dm_resume(self.md.md.as_ptr()) };
        if let Err(e) = to_result(ret) {
            // Only if someone else resumed it meanwhile (`EINVAL`), or a signal interrupted the
            // wait for an internal resume (`EINTR`): `dmsetup resume` finishes the job.
            pr_err!(
                "cannot resume device-mapper device {}: {:?}\n",
                DevNum(self.md.device_number()),
                e
            );
        }
    }
}

/// A block device opened by a target, closed when dropped.
///
/// # Invariants
///
/// `dev` was returned by `dm_get_device` for `ti` and not yet put; `ti` outlives it (a target
/// object, which owns its devices, is dropped before its `dm_target`).
pub struct TargetDevice {
    ti: NonNull<bindings::dm_target>,
    dev: NonNull<bindings::dm_dev>,
}

// SAFETY: A `dm_dev` may be used and put from any thread.
unsafe impl Send for TargetDevice {}
// SAFETY: The methods taking `&self` only read fields that do not change while the device is open.
unsafe impl Sync for TargetDevice {}

impl TargetDevice {
    /// Returns the device's name as `dmsetup table` shows it (`major:minor`).
    pub fn name(&self) -> &CStr {
        // SAFETY: `dev` is valid by the type invariants; `name` is a NUL-terminated array that
        // device-mapper fills in when it opens the device and never changes.
        unsafe { CStr::from_char_ptr((*self.dev.as_ptr()).name.as_ptr()) }
    }

    /// Redirects `bio` to sector `sector` of this device.
    pub fn remap(&self, bio: &mut Bio, sector: u64) {
        // SAFETY: `dev` is valid by the type invariants, and its block device stays open while
        // the target exists; device-mapper completes a target's bios before destroying it.
        unsafe { bio.set_dev((*self.dev.as_ptr()).bdev) };
        bio.set_sector(sector);
    }

    fn as_raw(&self) -> *mut bindings::dm_dev {
        self.dev.as_ptr()
    }

    /// Issues one synchronous `dm_io()` request on this device.
    fn io_sync(
        &self,
        client: &IoClient,
        opf: u32,
        sector: u64,
        count: u64,
        addr: *mut c_void,
    ) -> Result {
        let mut region = bindings::dm_io_region {
            // SAFETY: `dev` is valid by the type invariants.
            bdev: unsafe { (*self.dev.as_ptr()).bdev },
            sector,
            count,
        };
        let mut req = bindings::dm_io_request {
            bi_opf: opf,
            mem: bindings::dm_io_memory {
                type_: bindings::dm_io_mem_type_DM_IO_KMEM,
                offset: 0,
                ptr: bindings::dm_io_memory__bindgen_ty_1 { addr },
            },
            notify: bindings::dm_io_notify {
                fn_: None,
                context: core::ptr::null_mut(),
            },
            client: client.0.as_ptr(),
        };
        // SAFETY: `req` and `region` are valid for the call; with no notify function the call is
        // synchronous, so `addr` need only be valid until it returns, which the callers ensure.
        to_result(unsafe {
            bindings::dm_io(
                &mut req,
                1,
                &mut region,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                0,
            )
        })
    }

    /// Writes `data` to this device at `sector` and waits for it.
    ///
    /// `data` is in a `KBox`, which `kmalloc` allocates: `dm_io()` needs directly mapped memory.
    /// Must not be called while mapping a bio (the write would queue behind it).
    pub fn write_sync<const N: usize>(
        &self,
        client: &IoClient,
        sector: u64,
        data: &KBox<[u8; N]>,
    ) -> Result {
        build_assert!(N % 512 == 0);
        let addr = core::ptr::from_ref::<[u8; N]>(data)
            .cast_mut()
            .cast::<c_void>();
        self.io_sync(
            client,
            bindings::req_op_REQ_OP_WRITE | bindings::REQ_SYNC,
            sector,
            (N / 512) as u64,
            addr,
        )
    }

    /// Flushes this device's volatile write cache and waits for it.
    pub fn flush_sync(&self, client: &IoClient) -> Result {
        self.io_sync(
            client,
            bindings::req_op_REQ_OP_WRITE | bindings::REQ_PREFLUSH | bindings::REQ_SYNC,
            0,
            0,
            core::ptr::null_mut(),
        )
    }
}

/// A `dm_io()` client: the memory pools for synchronous I/O a target issues itself.
pub struct IoClient(NonNull<bindings::dm_io_client>);

// SAFETY: A `dm_io_client` may be used and destroyed from any thread.
unsafe impl Send for IoClient {}
// SAFETY: `dm_io()` may be called concurrently with the same client.
unsafe impl Sync for IoClient {}

impl IoClient {
    /// Creates a client.
    pub fn new() -> Result<Self> {
        // SAFETY: No preconditions; returns a client or an error pointer.
        let client = crate::error::from_err_ptr(unsafe { bindings::dm_io_client_create() })?;
        Ok(IoClient(NonNull::new(client).ok_or(ENOMEM)?))
    }
}

impl Drop for IoClient {
    fn drop(&mut self) {
        // SAFETY: The client was created in `new` and is not used any more.
        unsafe { bindings::dm_io_client_destroy(self.0.as_ptr()) }
    }
}

impl Drop for TargetDevice {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `dev` is an open device of `ti`, which is still valid.
        unsafe { bindings::dm_put_device(self.ti.as_ptr(), self.dev.as_ptr()) }
    }
}

/// The devices a target uses, reported to device-mapper (for queue limits and dependencies).
pub struct DeviceVisitor {
    ti: *mut bindings::dm_target,
    callout: bindings::iterate_devices_callout_fn,
    data: *mut c_void,
}

impl DeviceVisitor {
    /// Reports that the target uses `len` sectors of `dev` from `start`. Stops the walk (returns
    /// non-zero) if the callout does.
    pub fn visit(&mut self, dev: &TargetDevice, start: u64, len: u64) -> c_int {
        match self.callout {
            // SAFETY: The callout and its data come from device-mapper for this walk; `dev` is an
            // open device of this target.
            Some(f) => unsafe { f(self.ti, dev.as_raw(), start, len, self.data) },
            None => 0,
        }
    }
}

/// A device-mapper target type.
#[vtable]
pub trait Target: Sized + Send + Sync + 'static {
    /// The name used in table lines.
    const NAME: &'static CStr;
    /// The target's version, as `dmsetup targets` shows it.
    const VERSION: [u32; 3];

    /// Constructs a target from a table line's arguments.
    fn new(setup: &mut TargetSetup<'_>, args: Args<'_>) -> Result<Pin<KBox<Self>>, CtrError>;

    /// Maps one bio.
    fn map(&self, bio: &mut TargetBio, offset: u64) -> MapResult;

    /// Writes the status or the table line.
    fn status(&self, _kind: StatusType, _out: &mut StatusWriter<'_>) -> fmt::Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles `dmsetup message`; a reply, if any, goes to `out`.
    fn message(&self, _args: Args<'_>, _out: &mut StatusWriter<'_>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Reports the devices the target uses.
    fn iterate_devices(&self, _visitor: &mut DeviceVisitor) -> c_int {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Adjusts the queue limits device-mapper computed from the devices.
    fn io_hints(&self, _limits: &mut QueueLimits<'_>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The queue limits of a device-mapper device, for [`Target::io_hints`].
pub struct QueueLimits<'a> {
    limits: &'a mut bindings::queue_limits,
}

impl QueueLimits<'_> {
    /// Raises the logical block size (the smallest unit of I/O) to at least `bytes`; the physical
    /// block size and the minimum I/O size follow.
    pub fn raise_logical_block_size(&mut self, bytes: u32) {
        let l = &mut *self.limits;
        l.logical_block_size = l.logical_block_size.max(bytes);
        l.physical_block_size = l.physical_block_size.max(bytes);
        l.io_min = l.io_min.max(bytes);
    }
}

/// The C callbacks of a [`Target`].
struct Callbacks<T: Target>(PhantomData<T>);

impl<T: Target> Callbacks<T> {
    /// # Safety
    ///
    /// `ti` must be a target being constructed, with `argc` valid strings in `argv`.
    unsafe extern "C" fn ctr(
        ti: *mut bindings::dm_target,
        argc: c_uint,
        argv: *mut *mut c_char,
    ) -> c_int {
        let mut setup = TargetSetup {
            // SAFETY: Device-mapper passes a valid target.
            ti: unsafe { NonNull::new_unchecked(ti) },
            _p: PhantomData,
        };
        // SAFETY: Device-mapper passes `argc` valid strings that live during the call.
        let args = unsafe { Args::from_raw(argc, argv) };
        match T::new(&mut setup, args) {
            Ok(target) => {
                // SAFETY: The target stays pinned: `dtr` turns the pointer back into the same
                // pinned box, and nothing moves it in between.
                let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(target) });
                // SAFETY: `ti` is valid; `private` is ours, and freed in `dtr`.
                unsafe { (*ti).private = raw.cast() };
                0
            }
            Err(e) => {
                // SAFETY: `ti` is valid; `error` takes a static string.
                unsafe { (*ti).error = e.msg.as_char_ptr().cast_mut() };
                e.err.to_errno()
            }
        }
    }

    /// # Safety
    ///
    /// `ti` must be a target that `ctr` constructed successfully and not yet destroyed.
    unsafe fn target<'a>(ti: *mut bindings::dm_target) -> &'a T {
        // SAFETY: `private` was set by `ctr` to a `KBox<T>` that lives until `dtr`.
        unsafe { &*(*ti).private.cast::<T>() }
    }

    /// # Safety
    ///
    /// `ti` must be a target that `ctr` constructed successfully, being destroyed.
    unsafe extern "C" fn dtr(ti: *mut bindings::dm_target) {
        // SAFETY: `private` was set by `ctr` from `KBox::into_raw` of a pinned box, and `dtr`
        // runs once.
        drop(unsafe { Pin::new_unchecked(KBox::from_raw((*ti).private.cast::<T>())) });
    }

    /// # Safety
    ///
    /// `ti` must be a constructed target and `bio` a bio device-mapper lends to it.
    unsafe extern "C" fn map(ti: *mut bindings::dm_target, bio: *mut bindings::bio) -> c_int {
        // SAFETY: The caller guarantees both pointers; the bio is ours until we return or end it.
        // `TargetBio` is a transparent wrapper of `Bio`, and this bio is a clone being mapped.
        let (target, bio) = unsafe {
            (
                Self::target(ti),
                &mut *core::ptr::from_mut(Bio::from_raw(bio)).cast::<TargetBio>(),
            )
        };
        // `dm_target_offset()`: the bio's sector relative to the target's start.
        // SAFETY: `ti` is valid.
        let offset = bio.sector().wrapping_sub(unsafe { (*ti).begin });
        let r = match target.map(bio, offset) {
            MapResult::Remapped => bindings::DM_MAPIO_REMAPPED,
            MapResult::Completed(result) => {
                bio.end(result);
                bindings::DM_MAPIO_SUBMITTED
            }
            MapResult::Kill => bindings::DM_MAPIO_KILL,
        };
        r as c_int
    }

    /// # Safety
    ///
    /// `ti` must be a constructed target; `result` must have room for `maxlen` bytes.
    unsafe extern "C" fn status(
        ti: *mut bindings::dm_target,
        kind: bindings::status_type_t,
        _flags: c_uint,
        result: *mut c_char,
        maxlen: c_uint,
    ) {
        let kind = match kind {
            bindings::status_type_t_STATUSTYPE_INFO => StatusType::Info,
            bindings::status_type_t_STATUSTYPE_TABLE => StatusType::Table,
            _ => StatusType::Ima,
        };
        // SAFETY: The caller guarantees `result` has `maxlen` writable bytes.
        let buf = unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), maxlen as usize) };
        if let Some(first) = buf.first_mut() {
            *first = 0;
        }
        let mut out = StatusWriter { buf, len: 0 };
        // SAFETY: The caller guarantees `ti`. A cut-off status is what `DMEMIT` gives too.
        let _ = unsafe { Self::target(ti) }.status(kind, &mut out);
    }

    /// # Safety
    ///
    /// `ti` must be a constructed target, `argv` must hold `argc` strings, `result` `maxlen` bytes.
    unsafe extern "C" fn message(
        ti: *mut bindings::dm_target,
        argc: c_uint,
        argv: *mut *mut c_char,
        result: *mut c_char,
        maxlen: c_uint,
    ) -> c_int {
        // SAFETY: The caller guarantees `argv`.
        let args = unsafe { Args::from_raw(argc, argv) };
        // SAFETY: The caller guarantees `result` has `maxlen` writable bytes.
        let buf = unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), maxlen as usize) };
        let mut out = StatusWriter { buf, len: 0 };
        // SAFETY: The caller guarantees `ti`.
        match unsafe { Self::target(ti) }.message(args, &mut out) {
            // 1 tells device-mapper that `result` holds a reply.
            Ok(()) => c_int::from(!out.is_empty()),
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `ti` must be a constructed target and `limits` the limits device-mapper is computing.
    unsafe extern "C" fn io_hints(
        ti: *mut bindings::dm_target,
        limits: *mut bindings::queue_limits,
    ) {
        // SAFETY: The caller guarantees `limits` is valid, and ours during the call.
        let limits = unsafe { &mut *limits };
        let mut limits = QueueLimits { limits };
        // SAFETY: The caller guarantees `ti`.
        unsafe { Self::target(ti) }.io_hints(&mut limits)
    }

    /// # Safety
    ///
    /// `ti` must be a constructed target; `callout` and `data` come from device-mapper.
    unsafe extern "C" fn iterate_devices(
        ti: *mut bindings::dm_target,
        callout: bindings::iterate_devices_callout_fn,
        data: *mut c_void,
    ) -> c_int {
        let mut visitor = DeviceVisitor { ti, callout, data };
        // SAFETY: The caller guarantees `ti`.
        unsafe { Self::target(ti) }.iterate_devices(&mut visitor)
    }
}

/// The registration of a target type; unregistered when dropped.
#[pin_data(PinnedDrop)]
pub struct Registration<T: Target> {
    #[pin]
    tt: Opaque<bindings::target_type>,
    _p: PhantomData<T>,
}

// SAFETY: The registration only hands its `target_type` to device-mapper, which locks it.
unsafe impl<T: Target> Send for Registration<T> {}
// SAFETY: No method takes `&self`.
unsafe impl<T: Target> Sync for Registration<T> {}

impl<T: Target> Registration<T> {
    /// Registers target type `T`.
    pub fn new(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            tt <- Opaque::try_ffi_init(|slot: *mut bindings::target_type| {
                // SAFETY: `slot` is valid for writes, and pinned: device-mapper links it into its
                // list until `dm_unregister_target` in `drop`.
                unsafe {
                    slot.write(bindings::target_type {
                        name: T::NAME.as_char_ptr(),
                        module: module.as_ptr(),
                        version: T::VERSION,
                        ctr: Some(Callbacks::<T>::ctr),
                        dtr: Some(Callbacks::<T>::dtr),
                        map: Some(Callbacks::<T>::map),
                        status: if T::HAS_STATUS { Some(Callbacks::<T>::status) } else { None },
                        message: if T::HAS_MESSAGE { Some(Callbacks::<T>::message) } else { None },
                        iterate_devices: if T::HAS_ITERATE_DEVICES {
                            Some(Callbacks::<T>::iterate_devices)
                        } else {
                            None
                        },
                        io_hints: if T::HAS_IO_HINTS {
                            Some(Callbacks::<T>::io_hints)
                        } else {
                            None
                        },
                        ..pin_init::zeroed()
                    });
                    to_result(bindings::dm_register_target(slot))
                }
            }),
            _p: PhantomData,
        })
    }
}

#[pinned_drop]
impl<T: Target> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: The target type was registered in `new` and is pinned.
        unsafe { bindings::dm_unregister_target(self.tt.get()) }
    }
}

#[macros::kunit_tests(rust_kernel_device_mapper)]
mod tests {
    use super::*;
    use crate::fmt::Write;

    #[test]
    fn status_writer_cuts_and_terminates() {
        let mut buf = [0xffu8; 8];
        let mut out = StatusWriter {
            buf: &mut buf,
            len: 0,
        };
        assert!(out.is_empty());
        assert!(out.write_str("hello world").is_ok());
        assert!(!out.is_empty());
        // Seven bytes of text and the terminating NUL, as `DMEMIT` leaves it.
        assert_eq!(&buf, b"hello w\0");
    }

    #[test]
    fn status_writer_without_room() {
        let mut buf = [0u8; 0];
        let mut out = StatusWriter {
            buf: &mut buf,
            len: 0,
        };
        assert!(out.write_str("anything").is_ok());
        assert!(out.is_empty());
    }

    #[test]
    fn args_from_table_line() {
        let mut a = *b"hibsnap\0";
        let mut b = *b"/dev/ram0\0";
        let mut argv = [
            a.as_mut_ptr().cast::<c_char>(),
            b.as_mut_ptr().cast::<c_char>(),
        ];
        // SAFETY: `argv` holds two valid strings that outlive `args`.
        let args = unsafe { Args::from_raw(2, argv.as_mut_ptr()) };
        assert_eq!(args.len(), 2);
        assert_eq!(args.get(1).map(CStr::to_bytes), Some(&b"/dev/ram0"[..]));
        assert!(args.get(2).is_none());
        // SAFETY: No strings are read for an empty argument list.
        let none = unsafe { Args::from_raw(0, core::ptr::null_mut()) };
        assert!(none.is_empty());
    }
}
