// SPDX-License-Identifier: GPL-2.0

//! `snapshot_kernel(2)`: the atomic, kernel-only snapshot.
//!
//! The pipeline follows the seed's step 3, one guard per step, each undone by its `Drop` when a
//! later step fails (the guards are dropped in reverse order):
//!
//! 1. reserve: [`LiveImage::begin`] counts the kernel pages, reclaims, and preallocates their
//!    copy and the overhead pages, or fails early with `ENOMEM`;
//! 2. sync the filesystems;
//! 3. quiesce: devices prepared, suspended and quiesced (`PMSG_FREEZE`);
//! 4. rendezvous: the secondary CPUs offline, as the kernel that restores an image expects;
//! 5. the atomic point: interrupts off, syscore suspended; the pages of the tasks that run on
//!    are marked to be copied, kernel memory is copied, user and page-cache pages of stopped
//!    tasks are pinned to be read in place, and the dm-hibsnap snapshot starts;
//!    Swap writes stop too: the image references what swap holds;
//! 6. CPUs and devices resumed (`PMSG_THAW`, or `PMSG_RESTORE` in a restored kernel), the
//!    unused reserve freed;
//! 7. the image handed to userspace as a file descriptor ([`Image`]).
//!
//! A fault-injection point before each step (the `fail_step` parameter) lets a test fail each
//! one in turn.

use crate::{
    freeze,
    image::Image, //
};
use kernel::{
    capability::{
        capable,
        Capability, //
    },
    power::{
        self,
        AtomicPoint,
        BlockSnapshot,
        DevicesPrepared,
        DevicesQuiesced,
        DevicesSuspended,
        Geometry,
        HibernationLock,
        LiveImage,
        Resume,
        SecondaryCpusOffline,
        Snapshot,
        SwapWritesStopped,
        SystemSleepLock, //
    },
    prelude::*,
    sync::rcu,
    tasklist,
    uapi, //
};

/// Checks the flags of `snapshot_kernel(2)`: none are defined yet.
fn check_flags(flags: u32) -> Result {
    if flags & !uapi::HIBSNAP_SNAPSHOT_FLAGS_ALL != 0 {
        return Err(EINVAL);
    }
    Ok(())
}

/// The steps of the pipeline, in order, as the `fail_step` parameter numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    Reserve = 1,
    Sync = 2,
    Prepare = 3,
    Suspend = 4,
    Quiesce = 5,
    Rendezvous = 6,
    Atomic = 7,
    Copy = 8,
    BlockSnapshot = 9,
    Swap = 10,
    Install = 11,
}

impl Step {
    /// Fails with `EIO` if the `fail_step` parameter names this step (fault injection).
    fn enter(self, fail_step: u32) -> Result {
        if fail_step == self as u32 {
            pr_info!(
                "snapshot: injected failure at step {} ({:?})\n",
                fail_step,
                self
            );
            return Err(EIO);
        }
        Ok(())
    }
}

/// Marks the pages of every task that is not stopped to be copied: they may be written after the
/// atomic point. The stopped tasks' pages are read in place later.
fn keep_running_tasks(image: &LiveImage, atomic: &AtomicPoint<'_>) -> Result {
    let guard = rcu::read_lock();
    for leader in tasklist::processes(&guard) {
        if leader.is_kernel_thread() {
            continue;
        }
        for thread in leader.threads(&guard) {
            if !freeze::thread_stopped(thread) {
                image.keep_task(thread, atomic)?;
            }
        }
    }
    Ok(())
}

/// What the atomic point leaves in place for the life of the image: the block-device snapshot
/// and swap kept as it is.
pub(crate) struct Kept {
    pub(crate) block: BlockSnapshot,
    pub(crate) swap: SwapWritesStopped,
}

/// How [`take`] came back.
enum Outcome {
    /// The image was taken; what must stay in place while it is open.
    Taken(Kept),
    /// Control came back in a kernel restored from the image.
    Restored,
}

/// Steps 3 to 6: quiesce, rendezvous, take the image at the atomic point, resume.
fn take(image: &mut LiveImage, sleep: &SystemSleepLock, fail_step: u32) -> Result<Outcome> {
    Step::Prepare.enter(fail_step)?;
    let prepared = DevicesPrepared::new(sleep)?;
    Step::Suspend.enter(fail_step)?;
    let suspended = DevicesSuspended::new(&prepared)?;
    Step::Quiesce.enter(fail_step)?;
    let quiesced = DevicesQuiesced::new(&suspended)?;
    Step::Rendezvous.enter(fail_step)?;
    let cpus = SecondaryCpusOffline::new(&quiesced)?;
    Step::Atomic.enter(fail_step)?;
    let atomic = AtomicPoint::new(&cpus)?;
    keep_running_tasks(image, &atomic)?;
    Step::Copy.enter(fail_step)?;
    let outcome = match image.snapshot(&atomic)? {
        Snapshot::Taken => {
            // Nothing may fail once the block snapshot has started: ending it sleeps, and
            // interrupts are off until `atomic` is dropped.
            Step::BlockSnapshot.enter(fail_step)?;
            Step::Swap.enter(fail_step)?;
            let block = BlockSnapshot::start(&atomic)?;
            let swap = SwapWritesStopped::new(&atomic);
            Outcome::Taken(Kept { block, swap })
        }
        Snapshot::Restored => Outcome::Restored,
    };
    let how = match outcome {
        Outcome::Taken(_) => Resume::Thaw,
        Outcome::Restored => Resume::Restore,
    };
    drop(atomic);
    drop(cpus);
    quiesced.finish(how);
    suspended.finish(how);
    prepared.finish(how);
    Ok(outcome)
}

/// `snapshot_kernel(2)`: returns the file descriptor of the image.
pub(crate) fn snapshot_kernel(overhead_pages: usize, flags: u32, fail_step: u32) -> Result<u32> {
    check_flags(flags)?;
    if !capable(Capability::SysAdmin) || !power::hibernation_available() {
        return Err(EPERM);
    }
    if !freeze::held_by_current() {
        return Err(ENOLCK);
    }
    let lock = HibernationLock::acquire()?;
    let sleep = SystemSleepLock::lock();
    Step::Reserve.enter(fail_step)?;
    let mut image = LiveImage::begin(lock, overhead_pages)?;
    Step::Sync.enter(fail_step)?;
    power::sync_filesystems();
    let outcome = take(&mut image, &sleep, fail_step)?;
    drop(sleep);
    let file = match outcome {
        Outcome::Taken(kept) => {
            let freed = image.release_unused();
            let geometry = image.geometry();
            pr_debug!(
                "snapshot: {:?}, {} reserve pages freed, {} block devices, {} swap devices\n",
                geometry,
                freed,
                kept.block.devices(),
                kept.swap.devices()
            );
            Image::new(Some(image), Some(kept), geometry)
        }
        Outcome::Restored => {
            // The pins and pages of the image are those of the kernel that took it: drop them.
            drop(image);
            Image::new(None, None, Geometry::default())
        }
    };
    Step::Install.enter(fail_step)?;
    kernel::anon_inode::install_fd(file)
}

#[cfg(CONFIG_HIBSNAP_KUNIT_TEST)]
#[kunit_tests(hibsnap_snapshot)]
mod tests {
    use super::*;

    #[test]
    fn unknown_flags_are_einval() {
        assert!(check_flags(0).is_ok());
        assert_eq!(check_flags(1).err(), Some(EINVAL));
        assert_eq!(check_flags(1 << 31).err(), Some(EINVAL));
    }

    #[test]
    fn injected_failure_names_only_its_step() {
        assert_eq!(Step::Copy.enter(Step::Copy as u32).err(), Some(EIO));
        assert!(Step::Copy.enter(Step::Reserve as u32).is_ok());
        assert!(Step::Copy.enter(0).is_ok());
    }
}
