// SPDX-License-Identifier: GPL-2.0

//! The C entry points of the registry, for `snapshot_kernel(2)` (`include/linux/hibsnap.h`).

use crate::registry::{
    end_all,
    has_device,
    resume_all,
    snapshot_all,
    suspend_all, //
};
use kernel::{
    ffi::c_int,
    prelude::*, //
};

/// C entry point of [`snapshot_all`] for `snapshot_kernel(2)`: the number of targets switched, or
/// a negative errno.
///
/// # Safety
///
/// Call it with the devices suspended by [`dm_hibsnap_suspend_all`]; it takes only a spinlock
/// and allocates nothing, so any context will do, the atomic point with interrupts off too.
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
/// Call it in process context: it sleeps. A call of [`dm_hibsnap_resume_all`] must follow it
/// from the same caller, serialized with any other (`snapshot_kernel(2)` holds the system
/// sleep lock).
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
/// Call it in process context (it sleeps), after [`dm_hibsnap_suspend_all`], serialized with
/// it.
#[export]
pub unsafe extern "C" fn dm_hibsnap_resume_all() -> c_int {
    resume_all() as c_int
}

/// C entry point of [`has_device`] for `snapshot_kernel(2)`.
///
/// # Safety
///
/// Call it in process context: it takes the registry's mutex. `devt` may be any number.
#[export]
pub unsafe extern "C" fn dm_hibsnap_has_device(devt: u32) -> bool {
    has_device(devt)
}

/// C entry point of [`end_all`] for `snapshot_kernel(2)`: the number of targets ended, or a
/// negative errno.
///
/// # Safety
///
/// Call it in process context: it sleeps (a merge writes to the origins).
#[export]
pub unsafe extern "C" fn dm_hibsnap_end_all(merge: bool) -> c_int {
    match end_all(merge) {
        Ok(n) => n as c_int,
        Err(e) => e.to_errno(),
    }
}
