// SPDX-License-Identifier: GPL-2.0

//! Capability checks for the current task.
//!
//! C header: [`include/linux/capability.h`](srctree/include/linux/capability.h)

use crate::bindings;

/// A POSIX capability, see `capabilities(7)`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Capability {
    /// `CAP_SYS_ADMIN`: system administration.
    SysAdmin = bindings::CAP_SYS_ADMIN,
}

/// Returns whether the current task has `cap` in the initial user namespace.
///
/// As `capable()` in C, a successful check marks the task as having used a privilege
/// (`PF_SUPERPRIV`) and is subject to the LSMs.
///
/// # Examples
///
/// ```
/// use kernel::capability::{capable, Capability};
///
/// // Kernel threads, which run KUnit tests, have every capability.
/// assert!(capable(Capability::SysAdmin));
/// ```
#[inline]
pub fn capable(cap: Capability) -> bool {
    // SAFETY: `capable()` takes a capability number, which `cap as i32` is (the enum's values are
    // the `CAP_*` constants), and reads only the current task's credentials, which are valid
    // in any task context.
    unsafe { bindings::capable(cap as i32) }
}
