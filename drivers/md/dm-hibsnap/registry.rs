// SPDX-License-Identifier: GPL-2.0

//! The registry of every live target, through which `snapshot_kernel(2)` suspends their devices,
//! snapshots them all at once at the atomic point and ends their snapshots afterwards.
//!
//! A target is live once its table is: it enters the registry when its device is resumed with
//! it ([`Target::resume`](kernel::device_mapper::Target::resume)), not when it is constructed, so
//! that a table loaded but not made live is never suspended or snapshotted. A target is found by
//! its place, the device-mapper device and its first sector in it ([`Key`]): a reloaded table's
//! target takes the place, and the snapshot, of the one before it.

use crate::store::{
    Mode,
    Shared, //
};
use kernel::{
    device_mapper::{
        DevNum,
        MappedDevice,
        SuspendedDevice, //
    },
    new_mutex,
    new_spinlock,
    prelude::*,
    rbtree::RBTree,
    sync::{
        atomic::ordering,
        Arc,
        Mutex,
        SetOnce,
        SpinLock, //
    }, //
};

/// Where a target is: the device number of its device-mapper device and its first sector there.
pub(crate) type Key = (u32, u64);

/// Every live target's shared state, by place.
pub(crate) type Registry = SpinLock<RBTree<Key, Arc<Shared>>>;

/// The registry, set up once by the module's init.
pub(crate) static REGISTRY: SetOnce<Pin<KBox<Registry>>> = SetOnce::new();

/// The devices [`suspend_all`] suspended, until [`resume_all`].
pub(crate) static SUSPENDED: SetOnce<Pin<KBox<Mutex<KVec<SuspendedDevice>>>>> = SetOnce::new();

/// Sets the registry up, once, before the target type is registered: no target can miss it.
/// Returns `EBUSY` if it was set up already.
pub(crate) fn init() -> Result {
    let registry = KBox::pin_init(new_spinlock!(RBTree::new()), GFP_KERNEL)?;
    let suspended = KBox::pin_init(new_mutex!(KVec::new()), GFP_KERNEL)?;
    if REGISTRY.populate(registry) && SUSPENDED.populate(suspended) {
        Ok(())
    } else {
        Err(EBUSY)
    }
}

/// Suspends every device-mapper device that has a hibsnap target, each once, with its filesystem
/// frozen (`dmsetup suspend`): the filesystem is synced and takes no new write, and no bio is in
/// flight until [`resume_all`]. Sleeps. Returns the number of devices; on failure the devices
/// suspended by the call are resumed, and a device that was suspended already fails it with
/// `EBUSY`.
pub(crate) fn suspend_all() -> Result<u32> {
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
    for &devt in &devts {
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
    // The targets on the devices suspended here, and no other, may be snapshotted.
    let registry = REGISTRY.as_ref().ok_or(ENODEV)?.lock();
    for shared in registry.values() {
        if held.iter().any(|d| d.device_number() == shared.devt) {
            shared.held.store(true, ordering::Release);
        }
    }
    Ok(held.len() as u32)
}

/// Resumes the devices [`suspend_all`] suspended, and thaws their filesystems. Returns how many.
pub(crate) fn resume_all() -> u32 {
    let Some(held) = SUSPENDED.as_ref() else {
        return 0;
    };
    let mut held = held.lock();
    if let Some(registry) = REGISTRY.as_ref() {
        for shared in registry.lock().values() {
            shared.held.store(false, ordering::Release);
        }
    }
    let n = held.len() as u32;
    held.clear();
    n
}

/// Snapshots every hibsnap target on the devices [`suspend_all`] suspended, at once: their
/// origins receive no write from now on.
///
/// Takes no sleeping lock and allocates nothing, so that it can run at the atomic point of a
/// hibernation, on one CPU with interrupts off; the devices are suspended, so no bio is in
/// flight. Returns the number of targets, or `EBUSY` if one already holds a snapshot (then none
/// is switched by the call).
pub(crate) fn snapshot_all() -> Result<u32> {
    let registry = REGISTRY.as_ref().ok_or(ENODEV)?.lock();
    let held = || {
        registry
            .values()
            .filter(|shared| shared.held.load(ordering::Acquire))
    };
    let mut n = 0;
    for shared in held() {
        if shared.snapshot().is_err() {
            // Undo the ones switched by this call: nothing was written to them meanwhile.
            for undo in held().take(n) {
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
pub(crate) fn end_all(merge: bool) -> Result<u32> {
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

/// Whether `devt` is a device-mapper device with a hibsnap target: its writes are snapshotted.
pub(crate) fn has_device(devt: u32) -> bool {
    REGISTRY
        .as_ref()
        .is_some_and(|registry| registry.lock().values().any(|shared| shared.devt == devt))
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

        // Only the targets of suspended devices are snapshotted.
        assert_eq!(snapshot_all()?, 0);
        assert!(all_in(Mode::Passthrough)?);
        assert_eq!(suspend_all()?, n);
        assert_eq!(snapshot_all()?, n);
        assert!(all_in(Mode::Snapshot)?);
        // A second snapshot is refused and changes nothing.
        assert_eq!(snapshot_all(), Err(EBUSY));
        assert!(all_in(Mode::Snapshot)?);
        assert_eq!(resume_all(), n);
        // Drop: the resumed-system path.
        assert_eq!(end_all(false)?, n);
        assert!(all_in(Mode::Passthrough)?);
        assert_eq!(end_all(false)?, 0);
        // Merge: the abort path (an empty store: only the origin's flush).
        assert_eq!(suspend_all()?, n);
        assert_eq!(snapshot_all()?, n);
        assert_eq!(resume_all(), n);
        assert_eq!(end_all(true)?, n);
        assert!(all_in(Mode::Passthrough)?);
        Ok(())
    }
}
