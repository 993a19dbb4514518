// SPDX-License-Identifier: GPL-2.0

//! `snapshot_kernel(2)`: the atomic, kernel-only snapshot.
//!
//! The pipeline follows the seed's step 3, one guard per step, each undone by its `Drop` when a
//! later step fails (the guards are dropped in reverse order):
//!
//! 1. reserve: [`LiveImage::begin`] starts tracking writes to shared memory; every process's
//!    private anonymous memory is made copy-on-write and its shared mappings of shared memory
//!    write-protected ([`protect_user_memory`]); [`LiveImage::reserve`] counts the pages to copy,
//!    reclaims, and preallocates their copy and the overhead pages, or fails early with `ENOMEM`;
//! 2. sync the filesystems, and suspend every dm-hibsnap device with its filesystem frozen
//!    ([`BlockDevicesSuspended`]): no bio is in flight across the atomic point, and the filesystems
//!    on them have nothing unwritten (resumed after step 6);
//! 3. [`LiveImage::snapshot`], through the kernel's own hibernation path (`hibernate()`'s
//!    `hibernation_snapshot()`, in its live mode): devices prepared, suspended and quiesced
//!    (`PMSG_FREEZE`); the secondary CPUs offline, as the kernel that restores an image expects;
//!    then the atomic point: interrupts off, syscore suspended; kernel memory is copied, user
//!    pages that nothing can write any more (still copy-on-write, or page cache of files denied
//!    writing) or that are copied before their first write (shared memory) are held to be read
//!    in place, other user pages copied; in [`at_atomic_point`] the dm-hibsnap snapshot starts
//!    and swap writes stop (the image references what swap holds). Nothing in it reads user
//!    memory: a page held in place costs a reference and a bit, far less than a copy; its length
//!    is measured. Then CPUs and devices resume (`PMSG_THAW`, or `PMSG_RESTORE` in a restored
//!    kernel);
//! 4. the unused reserve freed but the overhead pages, all-zero pages kept in place listed as
//!    zero pages;
//! 5. the image handed to userspace as a file descriptor ([`Image`]).
//!
//! A fault-injection point before each of its own steps ([`Faults`], in debugfs as
//! `hibsnap/fail_<step>/`) and `fail_function` on the PM core's (`dpm_prepare()`,
//! `dpm_suspend()`, `dpm_suspend_end()`, `freeze_secondary_cpus()`, `syscore_suspend()`,
//! `swsusp_save()`) let a test fail each step in turn.

use crate::{
    block::{
        self,
        BlockDevicesSuspended,
        BlockSnapshot, //
    },
    freeze,
    image::{
        Image,
        Origin, //
    },
};
use kernel::{
    capability::{
        capable,
        Capability, //
    },
    debugfs::Dir,
    fault_inject::FaultAttr,
    power::{
        self,
        AtomicPoint,
        BlockFilesystem,
        DeviceHotplugLock,
        ForksHeldOff,
        FrozenFilesystem,
        Geometry,
        HibernationLock,
        LiveImage,
        Snapshot,
        SwapWritesStopped,
        SystemSleepLock, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        rcu, //
    },
    tasklist,
    uapi, //
};

/// Checks the flags of `snapshot_kernel(2)`.
fn check_flags(flags: u32) -> Result {
    if flags & !uapi::HIBSNAP_SNAPSHOT_FLAGS_ALL != 0 {
        return Err(EINVAL);
    }
    Ok(())
}

/// The filesystems mounted writable on block devices that are not dm-hibsnap devices: their
/// disks are not snapshotted, so a write after the atomic point would leave them unlike the page
/// cache and journal in the image. Each is named in the kernel log and the call fails with
/// `EBUSY`; with `freeze`, they are frozen instead, until the image is closed.
fn other_filesystems(freeze: bool) -> Result<KVec<FrozenFilesystem>> {
    let found = BlockFilesystem::writable_except(block::is_dm_hibsnap_device)?;
    if !freeze {
        for fs in &found {
            let mut buf = [0u8; 256];
            pr_err!(
                "snapshot: {} ({}) on {} is mounted writable, on a block device that is not a dm-hibsnap device: remount it read-only, or pass HIBSNAP_SNAPSHOT_FREEZE_OTHERS\n",
                fs.device_name().to_str().unwrap_or("?"),
                fs.type_name().to_str().unwrap_or("?"),
                fs.mount_path(&mut buf).to_str().unwrap_or("?")
            );
        }
        return if found.is_empty() {
            Ok(KVec::new())
        } else {
            Err(EBUSY)
        };
    }
    let mut frozen = KVec::with_capacity(found.len(), GFP_KERNEL)?;
    for fs in found {
        // Within the capacity reserved above; on an error the ones frozen so far are thawed.
        let _ = frozen.push_within_capacity(fs.freeze()?);
    }
    Ok(frozen)
}

/// The steps of the pipeline that hibsnap takes itself, in order; the PM core's lie between
/// `BlockSuspend` and `BlockSnapshot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Reserve,
    Sync,
    OtherFilesystems,
    BlockSuspend,
    BlockSnapshot,
    Swap,
    Install,
}

/// A fault-injection point before each [`Step`], in debugfs as `hibsnap/fail_<step>/`.
#[pin_data]
pub(crate) struct Faults {
    #[pin]
    reserve: FaultAttr,
    #[pin]
    sync: FaultAttr,
    #[pin]
    other_filesystems: FaultAttr,
    #[pin]
    block_suspend: FaultAttr,
    #[pin]
    block_snapshot: FaultAttr,
    #[pin]
    swap: FaultAttr,
    #[pin]
    install: FaultAttr,
}

impl Faults {
    /// The points, their directories made in `dir`.
    pub(crate) fn new(dir: &Dir) -> impl PinInit<Self> + '_ {
        pin_init!(Faults {
            reserve <- FaultAttr::new(c"fail_reserve", dir),
            sync <- FaultAttr::new(c"fail_sync", dir),
            other_filesystems <- FaultAttr::new(c"fail_other_filesystems", dir),
            block_suspend <- FaultAttr::new(c"fail_block_suspend", dir),
            block_snapshot <- FaultAttr::new(c"fail_block_snapshot", dir),
            swap <- FaultAttr::new(c"fail_swap", dir),
            install <- FaultAttr::new(c"fail_install", dir),
        })
    }

    fn attr(&self, step: Step) -> &FaultAttr {
        match step {
            Step::Reserve => &self.reserve,
            Step::Sync => &self.sync,
            Step::OtherFilesystems => &self.other_filesystems,
            Step::BlockSuspend => &self.block_suspend,
            Step::BlockSnapshot => &self.block_snapshot,
            Step::Swap => &self.swap,
            Step::Install => &self.install,
        }
    }
}

impl Step {
    /// Fails with `EIO` if its fault-injection point says so.
    fn enter(self, faults: Option<&Faults>) -> Result {
        match faults {
            Some(faults) if faults.attr(self).should_fail() => Err(EIO),
            _ => Ok(()),
        }
    }
}

/// Makes the private anonymous memory of every user process copy-on-write, stopped or running
/// (the caller, the helpers it continued, init), and write-protects its shared mappings of shared
/// memory: from the atomic point on, a write by anyone copies the page and leaves the image's one
/// alone. Forks of new address spaces wait meanwhile, so the list has every address space; a
/// process forked afterwards copies a protected parent, and its own new pages, like any page
/// written before the atomic point, are copied at it.
fn protect_user_memory(image: &mut LiveImage) -> Result {
    let forks = ForksHeldOff::hold();
    let processes = loop {
        let count = {
            let guard = rcu::read_lock();
            tasklist::processes(&guard).count()
        };
        // Room for processes made meanwhile by `clone(CLONE_VM)`, which shares an address space
        // already listed; the list cannot grow under RCU. If more come, the walk is made again.
        let mut processes = KVec::with_capacity(count + count / 8 + 16, GFP_KERNEL)?;
        let complete = {
            let guard = rcu::read_lock();
            tasklist::processes(&guard)
                .filter(|leader| !leader.is_kernel_thread())
                .all(|leader| processes.push_within_capacity(ARef::from(leader)).is_ok())
        };
        if complete {
            break processes;
        }
    };
    for process in &processes {
        image.protect(&forks, process)?;
    }
    Ok(())
}

/// What the atomic point leaves in place for the life of the image: the block-device snapshot
/// and swap kept as it is.
pub(crate) struct Kept {
    pub(crate) block: BlockSnapshot,
    pub(crate) swap: SwapWritesStopped,
    /// Filesystems not on dm-hibsnap devices, frozen (`HIBSNAP_SNAPSHOT_FREEZE_OTHERS`).
    pub(crate) others: KVec<FrozenFilesystem>,
}

/// Runs at the atomic point, once the image is taken: starts the block-device snapshot and stops
/// swap writes. Nothing may fail once the block snapshot has started: ending it sleeps, and
/// interrupts are off.
fn at_atomic_point(atomic: &AtomicPoint, faults: Option<&Faults>) -> Result<Kept> {
    Step::BlockSnapshot.enter(faults)?;
    Step::Swap.enter(faults)?;
    let block = BlockSnapshot::start(atomic)?;
    let swap = SwapWritesStopped::new(atomic);
    Ok(Kept {
        block,
        swap,
        others: KVec::new(),
    })
}

/// `snapshot_kernel(2)`: returns the file descriptor of the image.
pub(crate) fn snapshot_kernel(
    overhead_pages: usize,
    flags: u32,
    faults: Option<&Faults>,
) -> Result<u32> {
    check_flags(flags)?;
    if !capable(Capability::SysAdmin) || !power::hibernation_available() {
        return Err(EPERM);
    }
    if !freeze::held_by_current() {
        return Err(ENOLCK);
    }
    let lock = HibernationLock::acquire()?;
    let sleep = SystemSleepLock::lock();
    // As `hibernate()` takes it: no CPU or memory comes or goes between the image's bitmaps and
    // the atomic point.
    let hotplug = DeviceHotplugLock::lock();
    Step::Reserve.enter(faults)?;
    let mut image = LiveImage::begin(lock)?;
    protect_user_memory(&mut image)?;
    image.reserve(overhead_pages)?;
    Step::Sync.enter(faults)?;
    power::sync_filesystems();
    Step::OtherFilesystems.enter(faults)?;
    let others = other_filesystems(flags & uapi::HIBSNAP_SNAPSHOT_FREEZE_OTHERS != 0)?;
    Step::BlockSuspend.enter(faults)?;
    let blocks = BlockDevicesSuspended::new(&sleep)?;
    let snapshot = image.snapshot(&sleep, &hotplug, |atomic| at_atomic_point(atomic, faults))?;
    // Resumed in the kernel that took the image and in a restored one alike: both continue from
    // the atomic point, where the devices were suspended.
    let suspended = blocks.devices();
    drop(blocks);
    drop(hotplug);
    drop(sleep);
    let file = match snapshot {
        Snapshot::Taken {
            mut image,
            mut kept,
            atomic_ns,
        } => {
            // Frozen until the image is closed: what is written to them from now on would not
            // match the image.
            kept.others = others;
            let freed = image.release_unused();
            let kernel_zero = image.geometry().zero;
            image.find_zero_pages();
            let geometry = Geometry {
                atomic_ns,
                ..image.geometry()
            };
            pr_info!(
                "snapshot: interrupts off for {} us; {} pages copied ({} user: {} pinned, {} swap cache, {} exclusive, {} shared written), {} in place ({} copy-on-write, {} page cache, {} shared), {} zero ({} of kernel memory)\n",
                geometry.atomic_ns / 1000,
                geometry.copied,
                geometry.pinned + geometry.swapcache + geometry.exclusive + geometry.written,
                geometry.pinned,
                geometry.swapcache,
                geometry.exclusive,
                geometry.written,
                geometry.streamed,
                geometry.cow,
                geometry.denied,
                geometry.shared,
                geometry.zero,
                kernel_zero
            );
            pr_debug!(
                "snapshot: {:?}, {} reserve pages freed, {} block devices ({} suspended), {} swap devices\n",
                geometry,
                freed,
                kept.block.devices(),
                suspended,
                kept.swap.devices()
            );
            Image::new(Origin::Taken(image, kept), geometry)
        }
        Snapshot::Restored => {
            // The references and pages of the image were those of the kernel that took it:
            // `snapshot()` dropped them. The disks are as the image left them: the other
            // filesystems thaw now.
            drop(others);
            Image::new(Origin::Restored, Geometry::default())
        }
    };
    Step::Install.enter(faults)?;
    kernel::anon_inode::install_fd(file)
}

#[cfg(CONFIG_HIBSNAP_KUNIT_TEST)]
#[kunit_tests(hibsnap_snapshot)]
mod tests {
    use super::*;

    #[test]
    fn unknown_flags_are_einval() {
        assert!(check_flags(0).is_ok());
        assert!(check_flags(uapi::HIBSNAP_SNAPSHOT_FREEZE_OTHERS).is_ok());
        assert_eq!(check_flags(2).err(), Some(EINVAL));
        assert_eq!(check_flags(1 << 31).err(), Some(EINVAL));
    }

    #[test]
    fn no_fault_injection_fails_nothing() {
        assert!(Step::Reserve.enter(None).is_ok());
        assert!(Step::Install.enter(None).is_ok());
    }
}
