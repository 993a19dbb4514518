// SPDX-License-Identifier: GPL-2.0

//! Anonymous-inode files: file descriptors backed by a Rust object.
//!
//! An anonymous-inode file has no name in any filesystem; it exists only as an open file. It is
//! the usual way to hand a kernel object to userspace as a file descriptor (eventfd, timerfd,
//! pidfd, ...). The object lives as long as the file does: when the last reference to the file is
//! gone, the object is dropped, so its [`Drop`] implementation is the place to undo whatever it
//! stands for.
//!
//! C header: [`include/linux/anon_inodes.h`](srctree/include/linux/anon_inodes.h)

use crate::{
    alloc::KBox,
    bindings,
    error::{
        from_err_ptr,
        Result, //
    },
    ffi::{
        c_int,
        c_void, //
    },
    fs::file::{
        flags,
        FileDescriptorReservation, //
    },
    prelude::*,
    str::CStr,
    sync::aref::ARef, //
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};

/// An object that can back an anonymous-inode file.
pub trait AnonInodeFile: Send + Sync + Sized + 'static {
    /// The name the file shows in `/proc/PID/fd/` (as `anon_inode:NAME`).
    const NAME: &'static CStr;
}

/// The file operations of an [`AnonInodeFile`].
struct FileVTable<T: AnonInodeFile>(PhantomData<T>);

impl<T: AnonInodeFile> FileVTable<T> {
    const VTABLE: bindings::file_operations = bindings::file_operations {
        release: Some(Self::release),
        ..pin_init::zeroed()
    };

    /// # Safety
    ///
    /// `file` must be a file created by [`install_fd`] with this vtable, being released: its
    /// `private_data` is an owned `KBox<T>`, not yet freed.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: The file is valid during its release callback.
        let private = unsafe { (*file).private_data };
        // SAFETY: `private_data` was produced by `KBox::into_raw` in `install_fd`, and the release
        // callback runs once per file, so ownership of the box is taken back exactly once.
        drop(unsafe { KBox::from_raw(private.cast::<T>()) });
        0
    }
}

/// Creates an anonymous-inode file backed by `data` and installs it in a new file descriptor of
/// the current task, closed on exec (`O_CLOEXEC`) and read-only.
///
/// Returns the file descriptor. On error `data` is dropped, and nothing is left behind.
///
/// # Examples
///
/// ```
/// use kernel::{anon_inode::{self, AnonInodeFile}, prelude::*};
///
/// struct Handle;
/// impl AnonInodeFile for Handle {
///     const NAME: &'static CStr = c"[example]";
/// }
/// # // Kernel threads have no file table to install into, so only show the call.
/// # fn install() -> Result<u32> {
/// anon_inode::install_fd(KBox::new(Handle, GFP_KERNEL)?)
/// # }
/// ```
pub fn install_fd<T: AnonInodeFile>(data: KBox<T>) -> Result<u32> {
    let reservation = FileDescriptorReservation::get_unused_fd_flags(flags::O_CLOEXEC)?;
    let private = KBox::into_raw(data);
    // SAFETY: `NAME` is a valid NUL-terminated string and the vtable is a static with a `'static`
    // lifetime. On success the file owns `private` and frees it in `release`.
    let file = from_err_ptr(unsafe {
        bindings::anon_inode_getfile(
            T::NAME.as_char_ptr(),
            &FileVTable::<T>::VTABLE,
            private.cast::<c_void>(),
            flags::O_RDONLY as c_int,
        )
    });
    let file = match file {
        Ok(file) => file,
        Err(e) => {
            // SAFETY: `anon_inode_getfile` failed, so ownership of `private` was not taken.
            drop(unsafe { KBox::from_raw(private) });
            return Err(e);
        }
    };
    let fd = reservation.reserved_fd();
    // SAFETY: `anon_inode_getfile` succeeded, so `file` is a valid, non-null new file with a
    // reference we own, and nobody else has seen it, so it has no `fdget_pos` users. `File` is a
    // transparent wrapper of `struct file`.
    let file = unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast())) };
    reservation.fd_install(file);
    Ok(fd)
}
