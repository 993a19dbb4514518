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

/// `mlockall(MCL_CURRENT | MCL_FUTURE)`: the tool must not wait for its own pages while it
/// writes the image.
pub fn mlockall() -> io::Result<()> {
    // SAFETY: `mlockall` takes flags only.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The running kernel's release, as `uname -r` prints it.
pub fn kernel_release() -> io::Result<String> {
    // SAFETY: `utsname` is plain data, valid when zeroed.
    let mut u: libc::utsname = unsafe { core::mem::zeroed() };
    // SAFETY: `u` is a valid `utsname` for the kernel to fill.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The running kernel's GNU build id, from `/sys/kernel/notes`; empty if it has none.
pub fn kernel_build_id() -> Vec<u8> {
    let notes = std::fs::read("/sys/kernel/notes").unwrap_or_default();
    let word = |at: usize| {
        notes
            .get(at..at + 4)
            .map(|b| u32::from_ne_bytes(b.try_into().unwrap()) as usize)
    };
    let mut at = 0;
    while let (Some(namesz), Some(descsz), Some(kind)) = (word(at), word(at + 4), word(at + 8)) {
        let name = at + 12;
        let desc = name + namesz.div_ceil(4) * 4;
        let end = desc + descsz.div_ceil(4) * 4;
        if end > notes.len() {
            break;
        }
        // NT_GNU_BUILD_ID, owner "GNU".
        if kind == 3 && notes[name..name + namesz].starts_with(b"GNU\0") {
            return notes[desc..desc + descsz].to_vec();
        }
        at = end;
    }
    Vec::new()
}

/// `n` random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut out = [0u8; N];
    let mut got = 0;
    while got < N {
        // SAFETY: the kernel writes at most `N - got` bytes at `out[got..]`, which is ours.
        let n = unsafe { libc::getrandom(out[got..].as_mut_ptr().cast(), N - got, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        got += n as usize;
    }
    Ok(out)
}

/// Powers the machine off, after a sync. Returns only on failure.
pub fn power_off() -> io::Error {
    // SAFETY: `sync` takes no arguments.
    unsafe { libc::sync() };
    // SAFETY: `reboot` with `RB_POWER_OFF` takes no memory of ours.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    io::Error::last_os_error()
}

/// The ioctls of the kernel's own image loader, `/dev/snapshot` (`linux/suspend_ioctls.h`).
pub mod snapshot_dev {
    use std::io;
    use std::os::fd::AsRawFd;

    const MAGIC: u32 = b'3' as u32;
    /// `SNAPSHOT_FREEZE`.
    pub const FREEZE: u32 = (MAGIC << 8) | 1;
    /// `SNAPSHOT_UNFREEZE`.
    pub const UNFREEZE: u32 = (MAGIC << 8) | 2;
    /// `SNAPSHOT_ATOMIC_RESTORE`.
    pub const ATOMIC_RESTORE: u32 = (MAGIC << 8) | 4;

    /// An `_IO` ioctl (no argument) on `/dev/snapshot`.
    pub fn ioctl(fd: &impl AsRawFd, cmd: u32) -> io::Result<()> {
        // SAFETY: the commands above take no argument and touch no memory of ours.
        if unsafe { libc::ioctl(fd.as_raw_fd(), cmd as libc::Ioctl, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
