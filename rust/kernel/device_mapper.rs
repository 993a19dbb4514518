// SPDX-License-Identifier: GPL-2.0

//! Device-mapper targets.
//!
//! A target type is a [`Target`] implementation registered with a [`Registration`]. Each table
//! line naming it constructs one target object ([`Target::new`]), which device-mapper keeps until
//! the table is destroyed, and calls with the bios it maps ([`Target::map`]), for `dmsetup
//! status` and `dmsetup table` ([`Target::status`]), for `dmsetup message`
//! ([`Target::message`]) and when its table is made live ([`Target::resume`]): a table is
//! loaded inactive, and only resuming the device makes it live.
//!
//! The block devices a target opens belong to the abstraction, not to the target object: the
//! constructor gets a [`DeviceId`] for each, the callbacks reach them through the target's
//! [`Devices`], and they are put when the target is destroyed, after the target object is
//! dropped, while its `dm_target` still exists. A device that code outside the callbacks must
//! use (a merge started elsewhere) is shared as a [`SharedDevice`], which the target's
//! destruction revokes.
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
    new_mutex,
    prelude::*,
    str::CStr,
    sync::{
        Arc,
        Mutex, //
    },
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

    /// Completes the bio with `result` (`bio_endio()`), for a target that handled it itself.
    fn end(&mut self, result: Result) {
        let raw = self.0.as_raw();
        if let Err(e) = result {
            // SAFETY: The bio is valid and the target's while it is lent to the map function.
            unsafe { (*raw).bi_status = bindings::errno_to_blk_status(e.to_errno()) };
        }
        // SAFETY: The map function completes the bio it was lent, once (the callback returns
        // `DM_MAPIO_SUBMITTED` after this), and does not touch it afterwards.
        unsafe { bindings::bio_endio(raw) }
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
///
/// # Invariants
///
/// `ti` is the target being constructed, valid and the constructor's to set up while this object
/// lives (it only lives during the constructor); `devices` are that target's devices.
pub struct TargetSetup<'a> {
    ti: NonNull<bindings::dm_target>,
    /// The devices opened so far: the target's if the constructor succeeds, put if it fails.
    devices: &'a mut Devices,
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

    /// Returns the target's first sector in the device-mapper device.
    pub fn begin(&self) -> u64 {
        // SAFETY: `ti` is valid during the constructor.
        unsafe { (*self.ti.as_ptr()).begin }
    }

    /// Opens the device `path` (a path or `major:minor`) with the table's mode. It is the
    /// target's until the target is destroyed.
    pub fn get_device(&mut self, path: &CStr) -> Result<DeviceId> {
        // Room first: a device opened must never be lost.
        self.devices.devs.reserve(1, GFP_KERNEL)?;
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
        let dev = NonNull::new(dev).ok_or(EINVAL)?;
        let id = DeviceId(self.devices.devs.len());
        // INVARIANT: `dm_get_device` succeeded, so `dev` is an open device of `ti`, put by
        // `Devices::drop`.
        self.devices
            .devs
            .push_within_capacity(DevPtr(dev))
            .map_err(|_| ENOMEM)?;
        Ok(id)
    }

    /// Shares the device `id` with code outside the target's callbacks, until the target is
    /// destroyed: see [`SharedDevice`].
    pub fn share_device(&mut self, id: DeviceId) -> Result<Arc<SharedDevice>> {
        let dev = *self.devices.devs.get(id.0).ok_or(EINVAL)?;
        self.devices.shared.reserve(1, GFP_KERNEL)?;
        let shared = Arc::pin_init(
            pin_init!(SharedDevice {
                dev <- new_mutex!(Some(dev)),
            }),
            GFP_KERNEL,
        )?;
        // INVARIANT: `shared` refers to one of `devs`, and is revoked by `Devices::drop`.
        self.devices
            .shared
            .push_within_capacity(shared.clone())
            .map_err(|_| ENOMEM)?;
        Ok(shared)
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

/// A block device opened by a target (`struct dm_dev`).
///
/// Only ever seen through a reference, borrowed from the target's [`Devices`] in a callback, or
/// from a [`SharedDevice`] while the target exists: it cannot outlive the target.
///
/// # Invariants
///
/// A `&TargetDevice` points to a `dm_dev` that `dm_get_device()` opened for a target that is not
/// destroyed yet and that stays open while the reference lives.
#[repr(transparent)]
pub struct TargetDevice(Opaque<bindings::dm_dev>);

// SAFETY: The methods taking `&self` only read fields that do not change while the device is open,
// and submit I/O, which may be done from any thread.
unsafe impl Sync for TargetDevice {}

impl TargetDevice {
    /// # Safety
    ///
    /// `dev` is a `dm_dev` opened by a live target that stays open for `'a`.
    unsafe fn from_raw<'a>(dev: *mut bindings::dm_dev) -> &'a Self {
        // SAFETY: `TargetDevice` is a transparent wrapper of `dm_dev`; the caller guarantees the
        // rest.
        unsafe { &*dev.cast::<Self>() }
    }

    /// Returns the device number of the opened block device (`major:minor`, as a `dev_t`).
    pub fn device_number(&self) -> u32 {
        // SAFETY: By the type invariants the device is open, so `bdev` is valid and its device
        // number never changes.
        unsafe { (*(*self.as_raw()).bdev).bd_dev }
    }

    /// Returns the device's name as `dmsetup table` shows it (`major:minor`).
    pub fn name(&self) -> &CStr {
        // SAFETY: `dev` is valid by the type invariants; `name` is a NUL-terminated array that
        // device-mapper fills in when it opens the device and never changes.
        unsafe { CStr::from_char_ptr((*self.as_raw()).name.as_ptr()) }
    }

    /// Redirects `bio` to sector `sector` of this device.
    pub fn remap(&self, bio: &mut Bio, sector: u64) {
        // SAFETY: `dev` is valid by the type invariants, and its block device stays open while
        // the target exists; device-mapper completes a target's bios before destroying it.
        unsafe { bio.set_dev((*self.as_raw()).bdev) };
        bio.set_sector(sector);
    }

    fn as_raw(&self) -> *mut bindings::dm_dev {
        self.0.get()
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
            bdev: unsafe { (*self.as_raw()).bdev },
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
        // SAFETY: `dm_io_client_create()` takes no argument and only allocates (in process
        // context, as `new` is called); it returns a client or an error pointer, both handled.
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

/// A `dm_dev` pointer, owned by a target's [`Devices`].
#[derive(Clone, Copy)]
struct DevPtr(NonNull<bindings::dm_dev>);

// SAFETY: A `dm_dev` may be used and put from any thread.
unsafe impl Send for DevPtr {}

/// Names one of the devices a target opened in its constructor ([`TargetSetup::get_device`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceId(usize);

/// The devices a target opened in its constructor. The abstraction owns them: it puts them when
/// the target is destroyed, after the target object is dropped and its [`SharedDevice`]s are
/// revoked; a constructor that fails has those it opened put.
///
/// # Invariants
///
/// Each of `devs` was returned by `dm_get_device()` for `ti` and is not put yet; `ti` is valid
/// until this object is dropped. Each of `shared` refers to one of `devs`.
pub struct Devices {
    ti: NonNull<bindings::dm_target>,
    devs: KVec<DevPtr>,
    shared: KVec<Arc<SharedDevice>>,
}

// SAFETY: After the constructor, the methods taking `&self` only read `devs`, which no longer
// changes.
unsafe impl Sync for Devices {}

impl Devices {
    fn new(ti: NonNull<bindings::dm_target>) -> Self {
        Devices {
            ti,
            devs: KVec::new(),
            shared: KVec::new(),
        }
    }

    /// The device `id`, if this target opened it.
    pub fn get(&self, id: DeviceId) -> Option<&TargetDevice> {
        self.devs.get(id.0).map(|dev| {
            // SAFETY: By the type invariants the device is open until `self` is dropped, which
            // the returned reference cannot outlive.
            unsafe { TargetDevice::from_raw(dev.0.as_ptr()) }
        })
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        for shared in &self.shared {
            // Waits for a user of the device to finish.
            *shared.dev.lock() = None;
        }
        for dev in &self.devs {
            // SAFETY: By the type invariants `dev` is an open device of `ti`, which is valid; it
            // is put once, here, and nothing refers to it any more: the target object is gone,
            // the shared references revoked, and `&TargetDevice`s borrow `self`.
            unsafe { bindings::dm_put_device(self.ti.as_ptr(), dev.0.as_ptr()) }
        }
    }
}

/// A target's device shared with code outside the target's callbacks (see
/// [`TargetSetup::share_device`]): usable until the target is destroyed, which revokes it.
///
/// # Invariants
///
/// While `dev` is `Some`, it is a device its target opened and has not put: the target's
/// [`Devices`] set it to `None`, under the lock, before they put it.
#[pin_data]
pub struct SharedDevice {
    /// The device; `None` once revoked.
    #[pin]
    dev: Mutex<Option<DevPtr>>,
}

impl SharedDevice {
    /// Runs `f` with the device, or fails with `ENODEV` if the target is destroyed. The target's
    /// destruction waits for `f` to return. Sleeps.
    pub fn with<R>(&self, f: impl FnOnce(&TargetDevice) -> R) -> Result<R> {
        let dev = self.dev.lock();
        let dev = dev.as_ref().ok_or(ENODEV)?;
        // SAFETY: Not revoked, so the device is open (`Devices` revokes under this lock before it
        // puts the device), and stays open while the lock is held, for longer than `f` runs.
        Ok(f(unsafe { TargetDevice::from_raw(dev.0.as_ptr()) }))
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
    fn map(&self, devices: &Devices, bio: &mut TargetBio, offset: u64) -> MapResult;

    /// Writes the status or the table line.
    fn status(
        &self,
        _devices: &Devices,
        _kind: StatusType,
        _out: &mut StatusWriter<'_>,
    ) -> fmt::Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles `dmsetup message`; a reply, if any, goes to `out`.
    fn message(&self, _args: Args<'_>, _out: &mut StatusWriter<'_>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Reports the devices the target uses.
    fn iterate_devices(&self, _devices: &Devices, _visitor: &mut DeviceVisitor) -> c_int {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when the target's table has been made live, before the device takes bios again.
    fn resume(&self, _devices: &Devices) {
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

/// What a constructed target's `private` points to: the target object and its devices, dropped
/// in that order.
struct TargetData<T> {
    target: Pin<KBox<T>>,
    devices: Devices,
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
        // SAFETY: Device-mapper passes a valid target.
        let ti_ptr = unsafe { NonNull::new_unchecked(ti) };
        // INVARIANT: No device yet; `ti` is valid until the target is destroyed, which drops
        // `devices` (below on error, in `dtr` otherwise).
        let mut devices = Devices::new(ti_ptr);
        let mut setup = TargetSetup {
            ti: ti_ptr,
            devices: &mut devices,
        };
        // SAFETY: Device-mapper passes `argc` valid strings that live during the call.
        let args = unsafe { Args::from_raw(argc, argv) };
        let result = T::new(&mut setup, args).and_then(|target| {
            KBox::new(TargetData { target, devices }, GFP_KERNEL).map_err(CtrError::from)
        });
        match result {
            Ok(data) => {
                // SAFETY: `ti` is valid; `private` is ours, and freed in `dtr`.
                unsafe { (*ti).private = KBox::into_raw(data).cast() };
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
    unsafe fn target<'a>(ti: *mut bindings::dm_target) -> &'a TargetData<T> {
        // SAFETY: `private` was set by `ctr` to a `KBox<TargetData<T>>` that lives until `dtr`.
        unsafe { &*(*ti).private.cast::<TargetData<T>>() }
    }

    /// # Safety
    ///
    /// `ti` must be a target that `ctr` constructed successfully, being destroyed.
    unsafe extern "C" fn dtr(ti: *mut bindings::dm_target) {
        // SAFETY: `private` was set by `ctr` from `KBox::into_raw`, and `dtr` runs once. Dropping
        // it drops the target object, then revokes and puts its devices, while `ti` is valid.
        drop(unsafe { KBox::from_raw((*ti).private.cast::<TargetData<T>>()) });
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
        let r = match target.target.map(&target.devices, bio, offset) {
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
        // SAFETY: The caller guarantees `ti`.
        let data = unsafe { Self::target(ti) };
        // A cut-off status is what `DMEMIT` gives too.
        let _ = data.target.status(&data.devices, kind, &mut out);
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
        match unsafe { Self::target(ti) }.target.message(args, &mut out) {
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
        unsafe { Self::target(ti) }.target.io_hints(&mut limits)
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
        let data = unsafe { Self::target(ti) };
        data.target.iterate_devices(&data.devices, &mut visitor)
    }

    /// # Safety
    ///
    /// `ti` must be a constructed target.
    unsafe extern "C" fn resume(ti: *mut bindings::dm_target) {
        // SAFETY: The caller guarantees `ti`.
        let data = unsafe { Self::target(ti) };
        data.target.resume(&data.devices)
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
                        resume: if T::HAS_RESUME {
                            Some(Callbacks::<T>::resume)
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
