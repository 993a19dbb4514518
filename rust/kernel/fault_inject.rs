// SPDX-License-Identifier: GPL-2.0

//! Fault injection: failures made to order, for tests of error paths.
//!
//! A [`FaultAttr`] is a point in the code that a test can make fail. It is configured from its
//! debugfs directory (`probability`, `interval`, `times`, `space`, `verbose`, `task-filter`, ...)
//! as `Documentation/fault-injection/fault-injection.rst` describes; by default it never fails.
//! Without `CONFIG_FAULT_INJECTION` it never fails and has no directory.
//!
//! C header: [`include/linux/fault-inject.h`](srctree/include/linux/fault-inject.h)

use crate::{
    bindings,
    debugfs::Dir,
    prelude::*,
    types::Opaque, //
};

/// A fault-injection point (`struct fault_attr`) with its debugfs directory.
///
/// # Examples
///
/// ```
/// use kernel::{
///     debugfs::Dir,
///     fault_inject::FaultAttr, //
/// };
///
/// let dir = Dir::new(c"fault_inject_example");
/// let fail_alloc = KBox::pin_init(FaultAttr::new(c"fail_alloc", &dir), GFP_KERNEL)?;
/// // Nothing has configured it (`probability` is 0): it does not fail.
/// assert!(!fail_alloc.should_fail());
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `attr` was initialised as `FAULT_ATTR_INITIALIZER` does and stays pinned. `dentry` is its
/// debugfs directory, made by `fault_create_debugfs_attr()` under `_parent`'s directory, or NULL
/// or an error pointer when there is none; it is removed before `attr` goes away.
#[pin_data(PinnedDrop)]
pub struct FaultAttr {
    #[pin]
    attr: Opaque<bindings::fault_attr>,
    dentry: *mut bindings::dentry,
    /// Keeps the parent directory until `dentry` is removed.
    _parent: Dir,
}

// SAFETY: `should_fail()` may be called from any task, concurrently (it works on atomics, and its
// counters are statistics); the directory is only removed by `drop`, which has the object alone.
unsafe impl Send for FaultAttr {}
// SAFETY: As for `Send`: `&self` methods only call `should_fail()`.
unsafe impl Sync for FaultAttr {}

impl FaultAttr {
    /// A fault-injection point that never fails until configured in its directory, `name`, made
    /// in `parent`. If the directory cannot be made, it cannot be configured and never fails.
    pub fn new<'a>(name: &'a CStr, parent: &Dir) -> impl PinInit<Self> + 'a {
        let parent = parent.clone();
        // SAFETY: The closure initialises every field of `*slot`: `attr` first, then `dentry`,
        // made for `attr`'s address, which is pinned from then on, and `_parent`. It cannot fail.
        unsafe {
            pin_init::pin_init_from_closure(move |slot: *mut Self| {
                let attr = Opaque::cast_into(&raw const (*slot).attr);
                // SAFETY: `attr` is valid for writes: it is part of `*slot`.
                bindings::fault_attr_init(attr);
                #[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
                // SAFETY: `name` is NUL-terminated, `parent.dentry()` is a debugfs directory (or
                // NULL, then the root, or an error pointer, then nothing is made), and `attr` is
                // initialised and stays valid until `drop` removes the directory.
                let dentry =
                    bindings::fault_create_debugfs_attr(name.as_char_ptr(), parent.dentry(), attr);
                #[cfg(not(CONFIG_FAULT_INJECTION_DEBUG_FS))]
                let dentry = {
                    let _ = name;
                    core::ptr::null_mut()
                };
                // SAFETY: `slot` is valid for writes of its fields.
                (&raw mut (*slot).dentry).write(dentry);
                // SAFETY: As above.
                (&raw mut (*slot)._parent).write(parent);
                Ok(())
            })
        }
    }

    /// Whether to fail now, as configured (`should_fail()`); each `true` is counted against
    /// `times`.
    pub fn should_fail(&self) -> bool {
        #[cfg(CONFIG_FAULT_INJECTION)]
        // SAFETY: By the type invariants `attr` is initialised and pinned.
        let fail = unsafe { bindings::should_fail(self.attr.get(), 1) };
        #[cfg(not(CONFIG_FAULT_INJECTION))]
        let fail = false;
        fail
    }
}

#[pinned_drop]
impl PinnedDrop for FaultAttr {
    fn drop(self: Pin<&mut Self>) {
        #[cfg(CONFIG_FAULT_INJECTION_DEBUG_FS)]
        // SAFETY: `dentry` is the directory made for this object, NULL or an error pointer, all
        // of which `debugfs_remove()` takes; its files point at `attr`, which is still valid.
        unsafe {
            bindings::debugfs_remove(self.dentry)
        };
    }
}
