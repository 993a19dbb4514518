// SPDX-License-Identifier: GPL-2.0
//! The system calls and ioctls of hibsnap, each as a safe function. The tool's `unsafe` is
//! here: hibsnap's own two system calls, which no crate knows, and the ioctls' types.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;

use rustix::ioctl::{Getter, NoArg, Opcode};

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

/// `HIBSNAP_IOC_GEOMETRY` on an image descriptor.
pub fn geometry(image: &impl AsFd) -> io::Result<uapi::Geometry> {
    // SAFETY: `IOC_GEOMETRY` is `_IOR(HIBSNAP_IOC_MAGIC, 1, struct hibsnap_geometry)`, and
    // `uapi::Geometry` is that struct, field for field (checked by `uapi`'s tests).
    let get = unsafe { Getter::<{ uapi::IOC_GEOMETRY as Opcode }, uapi::Geometry>::new() };
    // SAFETY: `get` is an `_IOR` ioctl whose output type matches its size (above).
    Ok(unsafe { rustix::ioctl::ioctl(image, get) }?)
}

/// `HIBSNAP_IOC_FREEZE_STATUS` on a freeze descriptor.
pub fn freeze_status(freeze: &impl AsFd) -> io::Result<uapi::FreezeStatus> {
    // SAFETY: `IOC_FREEZE_STATUS` is `_IOR(HIBSNAP_IOC_MAGIC, 2, struct hibsnap_freeze_status)`,
    // and `uapi::FreezeStatus` is that struct (checked by `uapi`'s tests).
    let get = unsafe { Getter::<{ uapi::IOC_FREEZE_STATUS as Opcode }, uapi::FreezeStatus>::new() };
    // SAFETY: `get` is an `_IOR` ioctl whose output type matches its size (above).
    Ok(unsafe { rustix::ioctl::ioctl(freeze, get) }?)
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE)`: the tool must not wait for its own pages while it
/// writes the image, nor need a free page while it feeds one to the kernel's loader.
pub fn mlockall() -> io::Result<()> {
    use rustix::mm::MlockAllFlags;
    Ok(rustix::mm::mlockall(
        MlockAllFlags::CURRENT | MlockAllFlags::FUTURE,
    )?)
}

/// A field of `/proc/meminfo` (`MemTotal`, `MemFree`, ...), in KiB; `None` if it cannot tell.
pub fn meminfo_kib(field: &str) -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The running kernel's release, as `uname -r` prints it.
pub fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
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

/// The payload of the `user` key `description` in the caller's keyrings: found with
/// `request_key(2)` (no upcall), read with `keyctl(KEYCTL_READ)`.
pub fn user_key(description: &str) -> io::Result<Vec<u8>> {
    let desc = CString::new(description)?;
    // SAFETY: the type and the description are NUL-terminated strings that live across the
    // call; the callout information is null (no upcall) and the destination keyring 0
    // (none), so the kernel reads nothing else of ours.
    let id = unsafe {
        libc::syscall(
            libc::SYS_request_key,
            c"user".as_ptr(),
            desc.as_ptr(),
            core::ptr::null::<libc::c_char>(),
            0 as libc::c_int,
        )
    };
    if id < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes at `buf`, which is ours.
        let n = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                libc::KEYCTL_READ as libc::c_int,
                id as libc::c_int,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        let Ok(n) = usize::try_from(n) else {
            return Err(io::Error::last_os_error());
        };
        // The key's length: all of it is in `buf` only if it fitted.
        if n <= buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf.resize(n, 0);
    }
}

/// Adds a `user` key to the caller's user keyring; for tests and for set-up scripts that
/// have no `keyctl(1)`.
pub fn add_user_key(description: &str, payload: &[u8]) -> io::Result<()> {
    let desc = CString::new(description)?;
    // SAFETY: the type and the description are NUL-terminated strings, and the kernel reads
    // `payload.len()` bytes at `payload`; all live across the call.
    let id = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            libc::KEY_SPEC_USER_KEYRING,
        )
    };
    if id < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `N` random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut out = [0u8; N];
    let mut got = 0;
    while got < N {
        match rustix::rand::getrandom(&mut out[got..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Bytes free for an unprivileged writer on the filesystem of `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(path)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Powers the machine off, after a sync. Returns only on failure.
pub fn power_off() -> io::Error {
    rustix::fs::sync();
    match rustix::system::reboot(rustix::system::RebootCommand::PowerOff) {
        Ok(()) => io::Error::other("reboot(RB_POWER_OFF) returned"),
        Err(e) => e.into(),
    }
}

/// The ioctls of the kernel's own image loader, `/dev/snapshot` (`linux/suspend_ioctls.h`).
pub mod snapshot_dev {
    use std::io;
    use std::os::fd::AsFd;

    use rustix::ioctl::opcode;

    const MAGIC: u8 = b'3';

    /// `SNAPSHOT_FREEZE`: freezes every other process, before an image is fed in.
    pub fn freeze(fd: &impl AsFd) -> io::Result<()> {
        super::no_arg::<{ opcode::none(MAGIC, 1) }>(fd)
    }

    /// `SNAPSHOT_UNFREEZE`: thaws them again.
    pub fn unfreeze(fd: &impl AsFd) -> io::Result<()> {
        super::no_arg::<{ opcode::none(MAGIC, 2) }>(fd)
    }

    /// `SNAPSHOT_ATOMIC_RESTORE`: restores the image fed in; returns only on failure.
    pub fn atomic_restore(fd: &impl AsFd) -> io::Result<()> {
        super::no_arg::<{ opcode::none(MAGIC, 4) }>(fd)
    }
}

/// An `_IO` ioctl: no argument.
fn no_arg<const OPCODE: Opcode>(fd: &impl AsFd) -> io::Result<()> {
    // SAFETY: the callers pass `_IO` commands of `/dev/snapshot`, which take no argument.
    let cmd = unsafe { NoArg::<OPCODE>::new() };
    // SAFETY: `cmd` takes no argument, so the kernel touches no memory of ours.
    Ok(unsafe { rustix::ioctl::ioctl(fd, cmd) }?)
}
