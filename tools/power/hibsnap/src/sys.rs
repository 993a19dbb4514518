// SPDX-License-Identifier: GPL-2.0
//! The system calls and ioctls of hibsnap, each as a safe function. All the `unsafe` of the
//! tool is here.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::uapi;

/// Turns the return value of a system call that returns a new file descriptor into an
/// [`OwnedFd`].
fn new_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(ret).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel returned `fd` as a new file descriptor of this process, which nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `freeze_processes(2)`: stops every other userspace process; the freeze lasts as long as the
/// returned descriptor is open.
pub fn freeze_processes(flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: `freeze_processes(2)` takes one integer argument and touches no memory of ours.
    new_fd(unsafe { libc::syscall(uapi::NR_FREEZE_PROCESSES, flags as libc::c_uint) })
}

/// `snapshot_kernel(2)`: takes the image; returns the image's descriptor, in the first system
/// and again in the restored one (see [`geometry`]'s `GEOMETRY_RESUMED`).
pub fn snapshot_kernel(overhead_pages: u64, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: `snapshot_kernel(2)` takes two integer arguments and touches no memory of ours.
    new_fd(unsafe {
        libc::syscall(
            uapi::NR_SNAPSHOT_KERNEL,
            overhead_pages as libc::c_ulong,
            flags as libc::c_uint,
        )
    })
}

/// An `_IOR` ioctl that fills a `T`.
fn ioctl_read<T: Default>(fd: &impl AsRawFd, cmd: u32) -> io::Result<T> {
    let mut out = T::default();
    // SAFETY: `cmd` is an `_IOR` command whose size is `size_of::<T>()` (see `uapi`), so the
    // kernel writes at most that many bytes, into `out`, which lives across the call.
    let ret = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            cmd as libc::Ioctl,
            &mut out as *mut T as *mut libc::c_void,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out)
}

/// `HIBSNAP_IOC_GEOMETRY` on an image descriptor.
pub fn geometry(image: &OwnedFd) -> io::Result<uapi::Geometry> {
    ioctl_read(image, uapi::IOC_GEOMETRY)
}

/// `HIBSNAP_IOC_FREEZE_STATUS` on a freeze descriptor.
pub fn freeze_status(freeze: &OwnedFd) -> io::Result<uapi::FreezeStatus> {
    ioctl_read(freeze, uapi::IOC_FREEZE_STATUS)
}
