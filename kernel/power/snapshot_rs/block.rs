// SPDX-License-Identifier: GPL-2.0

//! The block devices of the image: the dm-hibsnap devices suspended around the atomic point,
//! their snapshot started at it, and the test of whether a device is one of them.
//!
//! These call dm-hibsnap's C entry points (`include/linux/hibsnap.h`, exported from
//! `drivers/md/dm-hibsnap/exports.rs`): two Rust modules cannot call each other directly. Without
//! `CONFIG_DM_HIBSNAP` there is no such device, and nothing to call.

use kernel::{
    error::to_result,
    power::{
        AtomicPoint,
        SystemSleepLock, //
    },
    prelude::*, //
};

/// Every device-mapper device with a `hibsnap` target suspended, its filesystem frozen
/// (`dmsetup suspend`), until dropped: no filesystem on them has unwritten data or takes a new
/// write, and no bio to them is in flight, so that the [`BlockSnapshot`] started at the atomic
/// point holds exactly what the image's page cache and journal describe.
pub(crate) struct BlockDevicesSuspended {
    devices: usize,
}

impl BlockDevicesSuspended {
    /// Suspends them all, or none: a device suspended already fails it with `EBUSY`, a signal
    /// with `EINTR`, a filesystem that cannot freeze with its error. Sleeps.
    pub(crate) fn new(_sleep: &SystemSleepLock) -> Result<Self> {
        #[cfg(CONFIG_DM_HIBSNAP)]
        // SAFETY: `dm_hibsnap_suspend_all()` (dm-hibsnap's `#[export]`, declared in
        // `include/linux/hibsnap.h`) takes no argument and must be called in process context, as
        // a system call runs; the system sleep lock serializes it with `dm_hibsnap_resume_all()`.
        let ret = unsafe { kernel::bindings::dm_hibsnap_suspend_all() };
        // Without dm-hibsnap there is no device to suspend (the C header's stub says so too).
        #[cfg(not(CONFIG_DM_HIBSNAP))]
        let ret = 0;
        to_result(ret)?;
        Ok(BlockDevicesSuspended {
            devices: ret as usize,
        })
    }

    /// The number of devices suspended.
    pub(crate) fn devices(&self) -> usize {
        self.devices
    }
}

impl Drop for BlockDevicesSuspended {
    fn drop(&mut self) {
        #[cfg(CONFIG_DM_HIBSNAP)]
        // SAFETY: `dm_hibsnap_resume_all()` takes no argument and is called in process context,
        // by the task that suspended the devices in `new`; it resumes only those.
        let _ = unsafe { kernel::bindings::dm_hibsnap_resume_all() };
    }
}

/// Whether `devt` is a device-mapper device with a `hibsnap` target, whose writes the
/// [`BlockSnapshot`] keeps apart.
pub(crate) fn is_dm_hibsnap_device(devt: u32) -> bool {
    #[cfg(CONFIG_DM_HIBSNAP)]
    // SAFETY: `dm_hibsnap_has_device()` takes a device number by value and only reads dm-hibsnap's
    // registry under its lock; it is called in process context.
    let has = unsafe { kernel::bindings::dm_hibsnap_has_device(devt) };
    #[cfg(not(CONFIG_DM_HIBSNAP))]
    let has = {
        let _ = devt;
        false
    };
    has
}

/// The block-device snapshot of hibsnap's device-mapper target: from the atomic point on,
/// writes to every `hibsnap` device are kept apart, so that the devices keep the contents they
/// had at it. Dropping it merges the kept writes back into the devices.
pub(crate) struct BlockSnapshot {
    devices: usize,
}

impl BlockSnapshot {
    /// Starts the snapshot on every `hibsnap` device. Returns the snapshot, however many devices
    /// there are (maybe none).
    pub(crate) fn start(_atomic: &AtomicPoint) -> Result<Self> {
        #[cfg(CONFIG_DM_HIBSNAP)]
        // SAFETY: `dm_hibsnap_snapshot_all()` takes no argument and takes only a spinlock, so it
        // may run at the atomic point (`_atomic` proves it), where the devices are suspended.
        let ret = unsafe { kernel::bindings::dm_hibsnap_snapshot_all() };
        // Without dm-hibsnap there is no device to snapshot (the C header's stub says so too).
        #[cfg(not(CONFIG_DM_HIBSNAP))]
        let ret = 0;
        to_result(ret)?;
        Ok(BlockSnapshot {
            devices: ret as usize,
        })
    }

    /// The number of devices in the snapshot.
    pub(crate) fn devices(&self) -> usize {
        self.devices
    }
}

impl Drop for BlockSnapshot {
    fn drop(&mut self) {
        // Merged back, never dropped: the image was copied before the snapshot started, so a
        // kernel restored from it never holds one, and in this one every write since the
        // atomic point must reach the disks.
        #[cfg(CONFIG_DM_HIBSNAP)]
        // SAFETY: `dm_hibsnap_end_all()` takes a bool and sleeps: it is called in process
        // context (the image is closed in a task), once for the snapshot `start` began.
        let ret = unsafe { kernel::bindings::dm_hibsnap_end_all(true) };
        #[cfg(not(CONFIG_DM_HIBSNAP))]
        let ret = 0;
        if let Err(e) = to_result(ret) {
            pr_err!(
                "hibsnap: merging the block-device snapshot failed: {:?}\n",
                e
            );
        }
    }
}
