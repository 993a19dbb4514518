// SPDX-License-Identifier: GPL-2.0

//! System sleep transitions and live hibernation images.
//!
//! A live image is taken in steps: the system sleep lock and the device hotplug lock are taken
//! ([`SystemSleepLock`], [`DeviceHotplugLock`]), the hibernation code acquired
//! ([`HibernationLock`]), the image begun and its memory reserved ([`LiveImage::begin`],
//! [`LiveImage::reserve`]); then [`LiveImage::snapshot`] takes it through the kernel's own
//! hibernation path, the one `hibernate()` uses, and runs a closure at the atomic point, the only
//! place an [`AtomicPoint`] exists. Each step is undone by dropping what it returned.
//!
//! [`LiveImage`] is the image mode used by hibsnap (`Documentation/power/hibsnap.rst`): only
//! kernel memory is copied at the atomic point; user pages that nothing can write any more
//! (private anonymous memory made copy-on-write by [`LiveImage::protect`], page cache of files
//! denied writing) or that are copied before their first write (shared memory) are held by the
//! image and read in place afterwards. Its stream is what `/dev/snapshot` reads. Which page goes
//! where is decided by `page_live_class()` in `kernel/power/snapshot.c`; the table is in the
//! rst.
//!
//! C headers: [`include/linux/suspend.h`](srctree/include/linux/suspend.h),
//! [`include/linux/swap.h`](srctree/include/linux/swap.h)

use crate::{
    bindings,
    error::{
        from_err_ptr,
        to_result,
        Result, //
    },
    ffi::{
        c_char,
        c_int,
        c_uint,
        c_void, //
    },
    iov::IovIterDest,
    page::PAGE_SIZE,
    prelude::*,
    task::Task,
    types::NotThreadSafe, //
};
use core::ptr::NonNull;

/// Whether hibernation may be used at all: not disabled on the command line (`nohibernate`),
/// not forbidden by kernel lockdown, and no secret memory in use.
pub fn hibernation_available() -> bool {
    // SAFETY: `hibernation_available()` takes no arguments and only reads global flags
    // (`nohibernate`, lockdown, `secretmem_users`); it has no precondition on its caller.
    unsafe { bindings::hibernation_available() }
}

/// Writes all dirty data of all filesystems to their devices (`ksys_sync_helper()`).
pub fn sync_filesystems() {
    // SAFETY: `ksys_sync_helper()` takes no arguments and has no memory-safety precondition (it
    // sleeps: a call in atomic context is a bug the kernel reports, not undefined behaviour).
    unsafe { bindings::ksys_sync_helper() };
}

/// The system sleep lock (`system_transition_mutex`): no suspend or hibernation can start while
/// it is held. It is a mutex: hold it only within one system call.
///
/// # Invariants
///
/// The current task holds `system_transition_mutex`, taken by `lock_system_sleep()`, which
/// returned `flags`.
pub struct SystemSleepLock {
    flags: c_uint,
    _not_send: NotThreadSafe,
}

impl SystemSleepLock {
    /// Takes the lock, sleeping until it is free.
    pub fn lock() -> Self {
        // SAFETY: `lock_system_sleep()` takes `system_transition_mutex` and returns the task's
        // flags to give back to `unlock_system_sleep()`, which `drop` does, once, in the same
        // task (`SystemSleepLock` is not `Send`).
        let flags = unsafe { bindings::lock_system_sleep() };
        SystemSleepLock {
            flags,
            _not_send: NotThreadSafe,
        }
    }
}

impl Drop for SystemSleepLock {
    fn drop(&mut self) {
        // SAFETY: The lock was taken in `lock` by this task (`Self` is not `Send`), with these
        // flags.
        unsafe { bindings::unlock_system_sleep(self.flags) };
    }
}

/// The device hotplug lock (`lock_device_hotplug()`): no CPU or memory is added or removed while
/// it is held, so the page frames the image's bitmaps were made for stay the system's.
/// Hibernation holds it from before its bitmaps are made until the image is taken; so does
/// hibsnap. It is a mutex: hold it only within one system call.
///
/// # Invariants
///
/// The current task holds `device_hotplug_lock`, taken by `lock_device_hotplug()`.
pub struct DeviceHotplugLock {
    _not_send: NotThreadSafe,
}

impl DeviceHotplugLock {
    /// Takes the lock, sleeping until it is free.
    pub fn lock() -> Self {
        // SAFETY: `lock_device_hotplug()` takes `device_hotplug_lock`, a mutex; `drop` releases it
        // once, in the same task (`DeviceHotplugLock` is not `Send`).
        unsafe { bindings::lock_device_hotplug() };
        DeviceHotplugLock {
            _not_send: NotThreadSafe,
        }
    }
}

impl Drop for DeviceHotplugLock {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, this task holds the lock, taken in `lock`.
        unsafe { bindings::unlock_device_hotplug() };
    }
}

/// The right to use the hibernation image code (`hibernate_acquire()`): while it is held,
/// `/dev/snapshot` cannot be opened and no other image can be taken. It is not a lock, and may be
/// held across system calls.
///
/// # Invariants
///
/// `hibernate_acquire()` succeeded for this object, and `hibernate_release()` has not been
/// called for it.
pub struct HibernationLock(());

impl HibernationLock {
    /// Acquires the right, or fails with `EBUSY` if somebody holds it.
    pub fn acquire() -> Result<Self> {
        // SAFETY: `hibernate_acquire()` only tries to take the hibernation atomic counter; the
        // `HibernationLock` made from its success releases it once, in `drop`.
        if unsafe { bindings::hibernate_acquire() } {
            Ok(HibernationLock(()))
        } else {
            Err(EBUSY)
        }
    }
}

impl Drop for HibernationLock {
    fn drop(&mut self) {
        // SAFETY: Acquired in `acquire`.
        unsafe { bindings::hibernate_release() };
    }
}

/// The atomic point of a live image: interrupts off on the only online CPU, devices quiesced and
/// syscore suspended, the image just taken. Nothing else runs while it lasts. Only
/// [`LiveImage::snapshot`] makes one, for the closure it runs there.
///
/// # Invariants
///
/// Exists only while `hibernation_live_snapshot()` runs its `atomic` callback: interrupts are off
/// on the only online CPU.
pub struct AtomicPoint {
    _not_send: NotThreadSafe,
}

/// The state [`LiveImage::snapshot`] shares with [`at_atomic_point`]: the closure to run at the
/// atomic point, and what it returned.
struct AtAtomic<F, T> {
    f: Option<F>,
    kept: Option<T>,
}

/// The `atomic` callback of `struct hibernation_live`: runs the closure of
/// [`LiveImage::snapshot`].
///
/// # Safety
///
/// `data` points to the `AtAtomic<F, T>` that [`LiveImage::snapshot`] passed to
/// `hibernation_live_snapshot()`, which calls this at its atomic point, with interrupts off on the
/// only online CPU, and nothing else uses `data` meanwhile.
unsafe extern "C" fn at_atomic_point<F, T>(data: *mut c_void) -> c_int
where
    F: FnOnce(&AtomicPoint) -> Result<T>,
{
    // SAFETY: By the function's requirements `data` is a valid, unaliased `AtAtomic<F, T>`.
    let state = unsafe { &mut *data.cast::<AtAtomic<F, T>>() };
    let Some(f) = state.f.take() else {
        return EINVAL.to_errno();
    };
    // INVARIANT: By the function's requirements, this is the atomic point; `point` does not
    // outlive the call (the closure cannot keep a reference to it: `T` does not borrow it).
    let point = AtomicPoint {
        _not_send: NotThreadSafe,
    };
    match f(&point) {
        Ok(kept) => {
            state.kept = Some(kept);
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// What [`LiveImage::snapshot`] found when it returned.
pub enum Snapshot<T> {
    /// The image was taken; the system runs on.
    Taken {
        /// The image, to be read.
        image: TakenImage,
        /// What the closure run at the atomic point returned.
        kept: T,
        /// How long interrupts were off, in nanoseconds.
        atomic_ns: u64,
    },
    /// Control came back in a kernel restored from the image.
    Restored,
}

/// The numbers of pages in a live image, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Geometry {
    /// Pages copied at the atomic point (kernel memory, and user pages that might change).
    pub copied: usize,
    /// User pages read in place after it.
    pub streamed: usize,
    /// All-zero pages: listed in the image, with no data.
    pub zero: usize,
    /// Pages of the image's PFN list.
    pub meta: usize,
    /// Private anonymous pages kept in place, copy-on-write (all-zero ones too).
    pub cow: usize,
    /// Page-cache pages kept in place, their files denied writing (all-zero ones too).
    pub denied: usize,
    /// User pages copied because they may be DMA-pinned.
    pub pinned: usize,
    /// Anonymous pages copied because they were in the swap cache.
    pub swapcache: usize,
    /// Anonymous pages copied because they may have been mapped writable (written or faulted in
    /// since they were protected).
    pub exclusive: usize,
    /// Pages of shared memory kept in place, copied before their first write (all-zero ones too).
    pub shared: usize,
    /// Pages of shared memory copied because they may have been mapped writable (write-faulted
    /// since they were protected).
    pub written: usize,
    /// Pages of shared memory copied before a write since the atomic point.
    pub cbw: usize,
    /// How long interrupts were off at the atomic point, in nanoseconds.
    pub atomic_ns: u64,
    /// The image was dropped to give memory back: it can no longer be read.
    pub dropped: bool,
}

impl Geometry {
    /// The length of the image stream in bytes: header, PFN list, data pages.
    pub fn image_bytes(&self) -> usize {
        (1 + self.meta + self.copied + self.streamed) * PAGE_SIZE
    }
}

/// Forks that give the child an address space of its own held off (`swsusp_live_hold_forks()`),
/// those under way finished: a list of the processes taken while it lives has every address
/// space there is. Dropping it lets them run.
pub struct ForksHeldOff(());

impl ForksHeldOff {
    /// Waits for the forks under way, then holds off new ones.
    pub fn hold() -> Self {
        // SAFETY: No requirement: it sleeps, in process context; `Drop` releases it once.
        unsafe { bindings::swsusp_live_hold_forks() };
        ForksHeldOff(())
    }
}

impl Drop for ForksHeldOff {
    fn drop(&mut self) {
        // SAFETY: `hold` held forks off; this releases them once.
        unsafe { bindings::swsusp_live_release_forks() };
    }
}

/// A live hibernation image being prepared (`swsusp_live_begin()` .. `swsusp_live_end()`).
///
/// Created with [`LiveImage::begin`], its processes protected and its memory reserved;
/// [`LiveImage::snapshot`] consumes it and takes the image at the atomic point, once: what comes
/// out is a [`TakenImage`]. Dropping either drops the image's references on the pages it keeps in
/// place and frees every page it used.
///
/// # Invariants
///
/// `swsusp_live_begin()` succeeded and `swsusp_live_end()` has not been called: the image code's
/// global state is this object's, held through the hibernation lock.
pub struct LiveImage {
    _lock: HibernationLock,
}

/// A live hibernation image taken at the atomic point, read as a stream with
/// [`TakenImage::advance`] and [`TakenImage::copy_pages`].
///
/// # Invariants
///
/// `image` was taken (`swsusp_save()` ran in live mode, once). `pages`, when set, is what the last
/// `swsusp_live_next_pages()` returned: `nr` pages, valid until the next call or
/// `swsusp_live_end()`. Their contents are only ever read through raw pointers: a page read in
/// place is one that nothing writes any more, but that is the image code's promise, not one
/// Rust's references could carry.
pub struct TakenImage {
    /// The pages of the stream last returned by `swsusp_live_next_pages()`, if any, and how many.
    pages: Option<(NonNull<u8>, usize)>,
    _image: LiveImage,
}

// SAFETY: The image is global state of the hibernation code, owned through the hibernation lock
// by whoever holds this object; it is not tied to a task.
unsafe impl Send for TakenImage {}
// SAFETY: Every method that changes the image's state (the stream's position, its lists of pages,
// its reserve) takes `&mut self`. Those taking `&self` only read: the counters, which
// `swsusp_live_geometry()` reads with `READ_ONCE()` where the image code changes them
// concurrently, and the current pages, copied out through raw pointers.
unsafe impl Sync for TakenImage {}

impl LiveImage {
    /// Prepares an image: creates its bitmaps and starts tracking writes to shared memory, whose
    /// pages mapped writable from now on until the atomic point are copied at it. Then
    /// [`LiveImage::protect`] every process and [`LiveImage::reserve`] the memory.
    pub fn begin(lock: HibernationLock) -> Result<Self> {
        // SAFETY: The hibernation lock gives this image the hibernation code's state; on error
        // `swsusp_live_begin` leaves nothing behind.
        to_result(unsafe { bindings::swsusp_live_begin() })?;
        Ok(LiveImage { _lock: lock })
    }

    /// Makes the private anonymous memory of `process` copy-on-write, as `fork()` does for the
    /// parent: every such page is write-protected in every mapping and marked possibly shared,
    /// except pages that may be DMA-pinned; and write-protects its shared mappings of shared
    /// memory, whose next write then faults and copies the page first
    /// (`swsusp_live_protect_task()`).
    ///
    /// Nothing needs undoing: with no other reference, the next write to a page reuses it in
    /// place after a fault. Fails with `EINTR` if a fatal signal comes while waiting for the
    /// address space's lock.
    ///
    /// Forks are held off meanwhile (`_forks`): a child forked from `process` before this call
    /// would copy its mappings unprotected, and a list of the processes taken before it would not
    /// have the child.
    pub fn protect(&mut self, _forks: &ForksHeldOff, process: &Task) -> Result {
        // SAFETY: `process` is a valid task; the function takes its own reference on the address
        // space and the locks it needs; `swsusp_live_begin` was called.
        to_result(unsafe { bindings::swsusp_live_protect_task(process.as_ptr()) })
    }

    /// Counts the kernel pages, reclaims memory and reserves page frames for their copy and
    /// `overhead_pages` more. Fails with `ENOMEM` (and a kernel log line with the numbers) if
    /// they cannot be found. Call after [`LiveImage::protect`] for every process.
    pub fn reserve(&mut self, overhead_pages: usize) -> Result {
        // SAFETY: The image is ours and not taken yet; on error dropping it undoes the rest.
        to_result(unsafe { bindings::swsusp_live_reserve(overhead_pages) })
    }

    /// Takes the image through the kernel's own hibernation path (`hibernation_live_snapshot()`,
    /// `create_image()`): devices prepared, suspended and quiesced (`PMSG_FREEZE`), the secondary
    /// CPUs offline, interrupts off and syscore suspended, the CPU state saved and kernel memory
    /// copied; then `at_atomic` runs, still at the atomic point, and everything is resumed
    /// (`PMSG_THAW`). Each step that fails undoes those before it (`PMSG_RECOVER`); so does an
    /// error from `at_atomic`. A wakeup event pending at the atomic point fails it with `EBUSY`.
    ///
    /// Returns [`Snapshot::Restored`] when control comes back here in a kernel restored from the
    /// image: `at_atomic` does not run there, and devices resume with `PMSG_RESTORE`.
    ///
    /// `at_atomic` must not sleep: interrupts are off. Whatever it returns is dropped in process
    /// context, after the atomic point.
    ///
    /// The image is consumed: it is taken once (a second `swsusp_save()` would take its page
    /// references and write denials again). On error, and in a restored kernel, it is dropped.
    pub fn snapshot<T, F>(
        self,
        _sleep: &SystemSleepLock,
        _hotplug: &DeviceHotplugLock,
        at_atomic: F,
    ) -> Result<Snapshot<T>>
    where
        F: FnOnce(&AtomicPoint) -> Result<T>,
    {
        let mut state = AtAtomic::<F, T> {
            f: Some(at_atomic),
            kept: None,
        };
        let mut live = bindings::hibernation_live {
            atomic: Some(at_atomic_point::<F, T>),
            data: (&raw mut state).cast::<c_void>(),
            irqs_off_ns: 0,
            seen_ns: 0,
        };
        // SAFETY: The system sleep lock and the device hotplug lock are held (the references),
        // the hibernation code is acquired and `swsusp_live_begin` was called (the type
        // invariants): what `hibernation_live_snapshot` requires. `live` and `state` live across
        // the call, and the callback, `at_atomic_point::<F, T>`, is given `state` as the
        // `AtAtomic<F, T>` it requires, at the atomic point, which nothing else uses meanwhile.
        let ret = unsafe { bindings::hibernation_live_snapshot(&mut live) };
        to_result(ret)?;
        if ret > 0 {
            return Ok(Snapshot::Restored);
        }
        // The callback ran and succeeded: the call would have failed otherwise.
        let kept = state.kept.take().ok_or(EINVAL)?;
        // On x86 the clock is set back across taking the image to where it was before
        // (`restore_processor_state()`), so that part is replaced by its length measured from
        // inside.
        let atomic_ns = live.irqs_off_ns.saturating_sub(live.seen_ns) + raw_geometry().save_ns;
        // INVARIANT: `swsusp_save()` ran, once: `self` is consumed.
        let image = TakenImage {
            pages: None,
            _image: self,
        };
        Ok(Snapshot::Taken {
            image,
            kept,
            atomic_ns,
        })
    }
}

/// The image code's counters.
fn raw_geometry() -> bindings::swsusp_live_geometry {
    let mut geo: bindings::swsusp_live_geometry = pin_init::zeroed();
    // SAFETY: `geo` is a valid, writable `struct swsusp_live_geometry`; the image code's
    // counters are only read.
    unsafe { bindings::swsusp_live_geometry(&mut geo) };
    geo
}

impl TakenImage {
    /// Whether the image was dropped to give memory back: it can no longer be read.
    pub fn is_dropped(&self) -> bool {
        raw_geometry().dropped
    }

    /// Frees the reserved page frames the copy did not use, but the overhead pages: those are
    /// kept while the image is open and given back if the system runs out of memory, before the
    /// image itself is dropped. Returns how many were freed.
    pub fn release_unused(&mut self) -> usize {
        // SAFETY: The image is ours; called after `snapshot`, outside the atomic point.
        unsafe { bindings::swsusp_live_release_unused() }
    }

    /// Lists the all-zero pages kept in place as zero pages, without data; returns how many.
    /// Call once, before the stream is read.
    pub fn find_zero_pages(&mut self) -> usize {
        // SAFETY: The image is ours and was taken; nothing reads it yet (`&mut self`).
        unsafe { bindings::swsusp_live_find_zero() }
    }

    /// The numbers of pages in the image, by kind (`atomic_ns` is left 0: [`LiveImage::snapshot`]
    /// returns it).
    pub fn geometry(&self) -> Geometry {
        let geo = raw_geometry();
        let class = |c: bindings::swsusp_live_class| geo.by_class[c as usize];
        Geometry {
            copied: geo.copied,
            streamed: geo.streamed,
            zero: geo.zero,
            meta: geo.meta,
            cow: class(bindings::swsusp_live_class_SWSUSP_LIVE_COW),
            denied: class(bindings::swsusp_live_class_SWSUSP_LIVE_DENIED),
            pinned: class(bindings::swsusp_live_class_SWSUSP_LIVE_PINNED),
            swapcache: class(bindings::swsusp_live_class_SWSUSP_LIVE_SWAPCACHE),
            exclusive: class(bindings::swsusp_live_class_SWSUSP_LIVE_EXCLUSIVE),
            shared: class(bindings::swsusp_live_class_SWSUSP_LIVE_SHARED),
            written: class(bindings::swsusp_live_class_SWSUSP_LIVE_WRITTEN),
            cbw: geo.cbw,
            atomic_ns: 0,
            dropped: geo.dropped,
        }
    }

    /// Moves on to the next pages of the stream, at most `max` of them (at least one); returns
    /// `false` at its end. A page comes alone unless it is read in place: then the following
    /// page frames of its folio that follow it in the stream come with it, so that a huge page
    /// is read in one go.
    pub fn advance(&mut self, max: usize) -> Result<bool> {
        let max = u32::try_from(max.max(1)).unwrap_or(u32::MAX);
        let mut nr = 0u32;
        // The pages handed out before are not held any more once the call begins.
        self.pages = None;
        // SAFETY: The image is ours and was taken; the stream is read by one caller at a time
        // (`&mut self`); `nr` is valid for writes.
        let raw = unsafe { bindings::swsusp_live_next_pages(max, &mut nr) };
        let pages = from_err_ptr(raw.cast_mut())?;
        self.pages = NonNull::new(pages.cast::<u8>()).map(|p| (p, nr as usize));
        Ok(self.pages.is_some())
    }

    /// The length in bytes of the current pages of the stream: 0 if [`TakenImage::advance`] found
    /// none.
    pub fn pages_len(&self) -> usize {
        self.pages.map_or(0, |(_, nr)| nr * PAGE_SIZE)
    }

    /// Copies the current pages of the stream, from byte `offset` on, into `dest`; returns how
    /// many bytes were copied: fewer than are left if `dest` is full or faults, none if `offset`
    /// is at or past their end.
    pub fn copy_pages(&self, offset: usize, dest: &mut IovIterDest<'_>) -> usize {
        let Some((pages, nr)) = self.pages else {
            return 0;
        };
        let Some(len) = (nr * PAGE_SIZE).checked_sub(offset) else {
            return 0;
        };
        // SAFETY: By the type invariants `pages` is valid for reads of `nr` pages until the next
        // `advance`, which needs `&mut self`; `offset + len` is within them. `_copy_to_iter`
        // reads them as bytes, without assuming that nobody writes them meanwhile, and writes
        // into `dest` only.
        unsafe { bindings::_copy_to_iter(pages.as_ptr().add(offset).cast(), len, dest.as_raw()) }
    }
}

impl Drop for LiveImage {
    fn drop(&mut self) {
        // SAFETY: `swsusp_live_begin` succeeded in `begin`; this ends the image once.
        unsafe { bindings::swsusp_live_end() };
    }
}

/// Swap kept as it is: no swap slot is allocated and no page is written to swap, but swap-in
/// works and nothing on swap changes (`swap_stop_writes()`). Dropping it lets swap be written
/// again.
pub struct SwapWritesStopped {
    devices: usize,
}

impl SwapWritesStopped {
    /// Stops swap writes on every swap device, at the atomic point.
    pub fn new(_atomic: &AtomicPoint) -> Self {
        // SAFETY: Takes only spinlocks, as the atomic point allows; undone in `drop`.
        let devices = unsafe { bindings::swap_stop_writes() };
        SwapWritesStopped {
            devices: devices as usize,
        }
    }

    /// The number of swap devices stopped.
    pub fn devices(&self) -> usize {
        self.devices
    }
}

impl Drop for SwapWritesStopped {
    fn drop(&mut self) {
        // SAFETY: Swap writes were stopped in `new`; this resumes them once.
        unsafe { bindings::swap_resume_writes() };
    }
}

/// A filesystem mounted writable on block devices, held active (`s_active`).
///
/// # Invariants
///
/// `sb` is a superblock on which this object holds an active reference, put by `Drop`.
pub struct BlockFilesystem {
    sb: NonNull<bindings::super_block>,
}

// SAFETY: An active reference to a superblock may be used and put from any task.
unsafe impl Send for BlockFilesystem {}
// SAFETY: The methods taking `&self` only read what the active reference keeps valid.
unsafe impl Sync for BlockFilesystem {}

/// What [`BlockFilesystem::writable_except`] collects while it walks the superblocks.
struct Scan {
    found: KVec<BlockFilesystem>,
    skip: fn(u32) -> bool,
    overflow: bool,
}

/// What `scan_one` learns of one superblock's block devices.
struct Devices {
    skip: fn(u32) -> bool,
    seen: usize,
}

/// `iterate_super_bdevs()` callback of `scan_one`: counts a block device, and stops the walk at
/// the first one `skip` does not accept.
///
/// # Safety
///
/// `arg` is a `Devices` no one else uses.
unsafe extern "C" fn device_one(devt: bindings::dev_t, arg: *mut c_void) -> c_int {
    // SAFETY: By the function's requirements.
    let devices = unsafe { &mut *arg.cast::<Devices>() };
    devices.seen += 1;
    c_int::from(!(devices.skip)(devt))
}

/// `iterate_supers()` callback of [`BlockFilesystem::writable_except`].
///
/// # Safety
///
/// `sb` is a live superblock whose `s_umount` is held; `arg` is a `Scan` no one else uses.
unsafe extern "C" fn scan_one(sb: *mut bindings::super_block, arg: *mut c_void) {
    // SAFETY: By the function's requirements.
    let scan = unsafe { &mut *arg.cast::<Scan>() };
    // SAFETY: `sb` is live and `s_umount` held: `s_bdev`, the read-only flag and the filesystem
    // type are stable.
    let (bdev, flags) = unsafe { ((*sb).s_bdev, (*(*sb).s_type).fs_flags) };
    // SAFETY: As above.
    if unsafe { bindings::sb_rdonly(sb) } {
        return;
    }
    // A filesystem without a block device of its own that needs none keeps its data in memory
    // (tmpfs, proc) or elsewhere (NFS, FUSE): not a disk the image describes.
    if bdev.is_null() && (flags & bindings::FS_REQUIRES_DEV as c_int) == 0 {
        return;
    }
    // Every block device claimed for it (btrfs's, an external journal or log) must be one
    // `skip` accepts; one on disks it claimed none of cannot be told apart, and counts too.
    let mut devices = Devices {
        skip: scan.skip,
        seen: 0,
    };
    // SAFETY: `sb` is live; `device_one` matches the callback type, does not sleep and is given
    // a `Devices` that lives across the call.
    let refused =
        unsafe { bindings::iterate_super_bdevs(sb, Some(device_one), (&raw mut devices).cast()) };
    if refused == 0 && devices.seen > 0 {
        return;
    }
    if scan.found.len() == scan.found.capacity() {
        scan.overflow = true;
        return;
    }
    // SAFETY: `sb` is live; a superblock whose active count is already 0 is going away and is
    // left alone.
    if !unsafe { bindings::atomic_inc_not_zero(&raw mut (*sb).s_active) } {
        return;
    }
    let Some(sb) = NonNull::new(sb) else {
        return;
    };
    // INVARIANT: The active reference was just taken.
    let fs = BlockFilesystem { sb };
    // Within the capacity checked above.
    let _ = scan.found.push_within_capacity(fs);
}

impl BlockFilesystem {
    /// Every filesystem mounted writable with a block device (its own, one claimed for it such
    /// as an external journal, or any of a btrfs's) whose device number `skip` does not accept,
    /// and every one whose type needs a block device but that has none `skip` could look at:
    /// each held active. `skip` must not sleep. Sleeps.
    pub fn writable_except(skip: fn(u32) -> bool) -> Result<KVec<Self>> {
        let mut room = 16;
        loop {
            let mut scan = Scan {
                found: KVec::with_capacity(room, GFP_KERNEL)?,
                skip,
                overflow: false,
            };
            // SAFETY: `scan_one` matches the callback type and is given a `Scan` that lives
            // across the call.
            unsafe { bindings::iterate_supers(Some(scan_one), (&raw mut scan).cast()) };
            if !scan.overflow {
                return Ok(scan.found);
            }
            // Dropped here, outside `iterate_supers`: putting a reference may take `s_umount`.
            drop(scan);
            room *= 4;
        }
    }

    /// The name of the device (`s_id`, e.g. `sda1`), for log messages.
    pub fn device_name(&self) -> &CStr {
        // SAFETY: The active reference keeps the superblock valid; `s_id` is NUL-terminated.
        unsafe { CStr::from_char_ptr((*self.sb.as_ptr()).s_id.as_ptr()) }
    }

    /// The filesystem type's name (e.g. `ext4`), for log messages.
    pub fn type_name(&self) -> &CStr {
        // SAFETY: The active reference keeps the superblock and its filesystem type valid.
        unsafe { CStr::from_char_ptr((*(*self.sb.as_ptr()).s_type).name) }
    }

    /// Where it is mounted, as the calling task sees it, for log messages: written into `buf`.
    pub fn mount_path<'a>(&self, buf: &'a mut [u8; 256]) -> &'a CStr {
        // SAFETY: The active reference keeps the superblock valid; `buf` is writable for its
        // length, and the function writes a NUL-terminated path into it.
        let path = unsafe {
            bindings::sb_mount_path(
                self.sb.as_ptr(),
                buf.as_mut_ptr().cast::<c_char>(),
                buf.len() as i32,
            )
        };
        match from_err_ptr(path) {
            // SAFETY: The path lies within `buf`, NUL-terminated, and lives as long as it.
            Ok(path) => unsafe { CStr::from_char_ptr(path) },
            Err(_) => c"(path too long)",
        }
    }

    /// Freezes the filesystem (as `fsfreeze` does, held by the kernel): it is synced, and writes
    /// wait until the returned guard is dropped. Sleeps.
    pub fn freeze(self) -> Result<FrozenFilesystem> {
        // SAFETY: The active reference keeps the superblock valid; `freeze_super` takes
        // `s_umount` itself.
        to_result(unsafe {
            bindings::freeze_super(
                self.sb.as_ptr(),
                bindings::freeze_holder_FREEZE_HOLDER_KERNEL,
                core::ptr::null(),
            )
        })?;
        Ok(FrozenFilesystem { fs: self })
    }
}

impl Drop for BlockFilesystem {
    fn drop(&mut self) {
        // SAFETY: By the type invariants this object holds an active reference, put here once.
        unsafe { bindings::deactivate_super(self.sb.as_ptr()) };
    }
}

/// A filesystem frozen by [`BlockFilesystem::freeze`]; dropping it thaws it.
pub struct FrozenFilesystem {
    fs: BlockFilesystem,
}

impl Drop for FrozenFilesystem {
    fn drop(&mut self) {
        // SAFETY: The filesystem was frozen by the kernel holder in `freeze`; this thaws it once.
        let ret = unsafe {
            bindings::thaw_super(
                self.fs.sb.as_ptr(),
                bindings::freeze_holder_FREEZE_HOLDER_KERNEL,
                core::ptr::null(),
            )
        };
        if let Err(e) = to_result(ret) {
            pr_err!(
                "hibsnap: cannot thaw {}: {:?}\n",
                self.fs.device_name().to_str().unwrap_or("?"),
                e
            );
        }
    }
}
