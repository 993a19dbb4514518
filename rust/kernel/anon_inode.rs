// SPDX-License-Identifier: GPL-2.0

//! Anonymous-inode files: file descriptors backed by a Rust object.
//!
//! An anonymous-inode file has no name in any filesystem; it exists only as an open file. It is
//! the usual way to hand a kernel object to userspace as a file descriptor (eventfd, timerfd,
//! pidfd, ...). The object lives as long as the file does: when the last reference to the file is
//! gone, the object is dropped, so its [`Drop`] implementation is the place to undo whatever it
//! stands for.
//!
//! The file is a stream: `lseek(2)`, `pread(2)` and `pwrite(2)` fail with `ESPIPE`. An object
//! can implement `read(2)`, `ioctl(2)` and `poll(2)` ([`AnonInodeFile`] is a `#[vtable]`).
//!
//! C header: [`include/linux/anon_inodes.h`](srctree/include/linux/anon_inodes.h)

use crate::{
    alloc::KBox,
    bindings,
    error::{
        from_err_ptr,
        Result,
        VTABLE_DEFAULT_ERROR, //
    },
    ffi::{
        c_int,
        c_uint,
        c_ulong,
        c_void, //
    },
    fs::file::{
        flags,
        FileDescriptorReservation, //
    },
    iov::IovIterDest,
    module::this_module,
    prelude::*,
    str::CStr,
    sync::aref::ARef, //
};
use core::{
    marker::PhantomData,
    pin::Pin,
    ptr::NonNull, //
};

/// The events of [`AnonInodeFile::poll`] for "can be read without waiting" (`EPOLLIN |
/// EPOLLRDNORM`).
pub const POLL_READABLE: u32 = bindings::POLLIN | bindings::POLLRDNORM;

/// An object that can back an anonymous-inode file.
#[vtable]
pub trait AnonInodeFile: Send + Sync + Sized + 'static {
    /// The name the file shows in `/proc/PID/fd/` (as `anon_inode:NAME`).
    const NAME: &'static CStr;

    /// Handles `read(2)`: writes into `dest` and returns the number of bytes written, `0` at the
    /// end of the data.
    fn read(&self, _dest: &mut IovIterDest<'_>) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles `ioctl(2)`: `arg` is the untrusted argument, often a userspace address. A 32-bit
    /// caller on a 64-bit kernel gets here too, with `arg` converted (`compat_ptr_ioctl()`): the
    /// structs `arg` points to must have the same layout for both.
    fn ioctl(&self, _cmd: u32, _arg: usize) -> Result<isize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles `poll(2)`: returns the events that are ready now (`EPOLLIN`, ...). An object that
    /// implements it must be one that never has to make the poller wait.
    fn poll(&self) -> u32 {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The file operations of an [`AnonInodeFile`].
struct FileVTable<T: AnonInodeFile>(PhantomData<T>);

impl<T: AnonInodeFile> FileVTable<T> {
    const VTABLE: bindings::file_operations = bindings::file_operations {
        release: Some(Self::release),
        read_iter: if T::HAS_READ {
            Some(Self::read_iter)
        } else {
            None
        },
        unlocked_ioctl: if T::HAS_IOCTL {
            Some(Self::ioctl)
        } else {
            None
        },
        // 32-bit callers on a 64-bit kernel: the argument converted from a compat pointer, then
        // `ioctl` as for everyone, so the object's ioctl structs must have the same layout for
        // both (fixed-size fields, 64-bit ones at 8-byte offsets).
        #[cfg(CONFIG_COMPAT)]
        compat_ioctl: if T::HAS_IOCTL {
            bindings::compat_ptr_ioctl
        } else {
            None
        },
        poll: if T::HAS_POLL { Some(Self::poll) } else { None },
        // The module that implements `T` stays loaded while a file of it is open.
        owner: this_module::<T::OwnerModule>().as_ptr(),
        ..pin_init::zeroed()
    };

    /// # Safety
    ///
    /// `file` must be a file created by [`install_fd`] with this vtable, not yet released.
    unsafe fn object<'a>(file: *mut bindings::file) -> &'a T {
        // SAFETY: The caller guarantees that `file` is valid; its `private_data` points to the
        // pinned `T` created by `install_fd`, which lives until `release`, and is only ever
        // borrowed shared.
        unsafe { &*(*file).private_data.cast::<T>() }
    }

    /// # Safety
    ///
    /// `file` must be a file created by [`install_fd`] with this vtable, being released: its
    /// `private_data` is an owned, pinned `KBox<T>`, not yet freed.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: The file is valid during its release callback.
        let private = unsafe { (*file).private_data };
        // SAFETY: `private_data` was produced by `KBox::into_raw` from a pinned box in
        // `install_fd`, and the release callback runs once per file, so ownership of the box is
        // taken back exactly once. It is dropped in place, never moved.
        drop(unsafe { Pin::new_unchecked(KBox::from_raw(private.cast::<T>())) });
        0
    }

    /// # Safety
    ///
    /// `kiocb` must be a valid `struct kiocb` for a file created by [`install_fd`] with this
    /// vtable, and `iter` a valid destination `struct iov_iter`.
    unsafe extern "C" fn read_iter(
        kiocb: *mut bindings::kiocb,
        iter: *mut bindings::iov_iter,
    ) -> isize {
        // SAFETY: The caller guarantees that `kiocb` is valid and belongs to our file.
        let object = unsafe { Self::object((*kiocb).ki_filp) };
        // SAFETY: The caller guarantees that `iter` is a valid destination iterator for the
        // duration of this call.
        let dest = unsafe { IovIterDest::from_raw(iter) };
        match object.read(dest) {
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// `file` must be a file created by [`install_fd`] with this vtable, not yet released.
    unsafe extern "C" fn ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> isize {
        // SAFETY: The caller guarantees that `file` is one of ours and valid during the call.
        let object = unsafe { Self::object(file) };
        match object.ioctl(cmd, arg) {
            Ok(n) => n,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// `file` must be a file created by [`install_fd`] with this vtable, not yet released.
    unsafe extern "C" fn poll(
        file: *mut bindings::file,
        _wait: *mut bindings::poll_table_struct,
    ) -> bindings::__poll_t {
        // SAFETY: The caller guarantees that `file` is one of ours and valid during the call.
        let object = unsafe { Self::object(file) };
        object.poll()
    }
}

/// Creates an anonymous-inode file backed by the object `init` initialises, and installs it in a
/// new file descriptor of the current task, closed on exec (`O_CLOEXEC`), read-only and not
/// seekable.
///
/// Returns the file descriptor. On error the object is dropped, and nothing is left behind.
///
/// # Examples
///
/// ```
/// use kernel::{
///     anon_inode::{self, AnonInodeFile},
///     fs::{file::flags, LocalFile},
///     prelude::*, //
/// };
///
/// #[pin_data]
/// struct Handle {
///     id: u32,
/// }
/// #[vtable]
/// impl AnonInodeFile for Handle {
///     const NAME: &'static CStr = c"[example]";
/// }
///
/// let fd = anon_inode::install_fd(try_pin_init!(Handle { id: 1 }? Error))?;
/// // The descriptor refers to a new read-only file.
/// let file = LocalFile::fget(fd)?;
/// assert_eq!(file.flags() & flags::O_ACCMODE, flags::O_RDONLY);
/// # drop(file);
/// # // The test runs in a kernel thread: give its file table the descriptor back.
/// # // SAFETY: `fd` was installed above, in this thread's table, and nothing else uses it.
/// # assert_eq!(unsafe { kernel::bindings::close_fd(fd) }, 0);
/// # Ok::<(), Error>(())
/// ```
pub fn install_fd<T: AnonInodeFile>(init: impl PinInit<T, Error>) -> Result<u32> {
    let reservation = FileDescriptorReservation::get_unused_fd_flags(flags::O_CLOEXEC)?;
    let data = KBox::pin_init(init, GFP_KERNEL)?;
    // SAFETY: The object is never moved out of the box: `release` drops it in place.
    let private = KBox::into_raw(unsafe { Pin::into_inner_unchecked(data) });
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
            // SAFETY: `anon_inode_getfile` failed, so ownership of `private` was not taken; the
            // object is dropped in place.
            drop(unsafe { Pin::new_unchecked(KBox::from_raw(private)) });
            return Err(e);
        }
    };
    // SAFETY: `file` is a valid new file nobody else has seen yet; `stream_open` only clears the
    // seek modes and never fails.
    unsafe { bindings::stream_open((*file).f_inode, file) };
    let fd = reservation.reserved_fd();
    // SAFETY: `anon_inode_getfile` succeeded, so `file` is a valid, non-null new file with a
    // reference we own, and nobody else has seen it, so it has no `fdget_pos` users. `File` is a
    // transparent wrapper of `struct file`.
    let file = unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast())) };
    reservation.fd_install(file);
    Ok(fd)
}
