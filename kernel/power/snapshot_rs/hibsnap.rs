// SPDX-License-Identifier: GPL-2.0

//! hibsnap: hibernation by a kernel-only snapshot.
//!
//! Instead of the freezer and a copy of half of RAM, hibsnap stops userspace with an untrappable
//! `SIGSTOP` (`freeze_processes(2)`), lets userspace continue the few helpers it needs, and takes
//! an atomic snapshot of kernel memory only; user pages and the page cache are streamed to
//! userspace afterwards from a file descriptor. See `Documentation/power/hibsnap.rst`.
//!
//! The system calls enter through the C shims in `syscalls.c`, which call the `#[export]`ed
//! functions below; `block.rs` calls dm-hibsnap's C entry points, and `uapi.rs` declares the
//! ioctl structs plain bytes; everything else is safe Rust over the abstractions in
//! `rust/kernel/`.

use core::fmt;
use kernel::{
    debugfs::{
        self,
        Reader, //
    },
    ffi::{
        c_long,
        c_uint,
        c_ulong, //
    },
    prelude::*,
    sync::{
        atomic::{
            ordering,
            Atomic, //
        },
        SetOnce,
    },
    uaccess::UserSliceReader, //
};

mod block;
mod freeze;
mod image;
mod snapshot;
mod uapi;

module! {
    type: Hibsnap,
    name: "hibsnap",
    authors: ["The hibsnap developers"],
    description: "Hibernation by a kernel-only snapshot",
    license: "GPL",
    params: {
        freeze_timeout_ms: u32 {
            default: 20000,
            description: "How long freeze_processes(2) waits for every task to stop (ms)",
        },
    },
}

/// The fault-injection points of `snapshot_kernel(2)`, made when the module starts.
static FAULTS: SetOnce<Pin<KBox<snapshot::Faults>>> = SetOnce::new();

/// A thread group `freeze_processes(2)` must treat as never quiet, for tests of its timeout
/// (`0`: none).
static STUBBORN_TGID: Atomic<u32> = Atomic::new(0);

/// A number in debugfs, read and written as text, for tests.
struct Knob(&'static Atomic<u32>);

impl fmt::Debug for Knob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.load(ordering::Relaxed))
    }
}

impl Reader for Knob {
    fn read_from_slice(&self, reader: &mut UserSliceReader) -> Result {
        self.0.read_from_slice(reader)
    }
}

struct Hibsnap {
    _stubborn_tgid: Pin<KBox<debugfs::File<Knob>>>,
    _debugfs: debugfs::Dir,
}

impl kernel::Module for Hibsnap {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let dir = debugfs::Dir::new(c"hibsnap");
        // Only `init` populates it, once.
        let _ = FAULTS.populate(KBox::pin_init(snapshot::Faults::new(&dir), GFP_KERNEL)?);
        let stubborn_tgid = KBox::pin_init(
            dir.read_write_file(c"stubborn_tgid", Knob(&STUBBORN_TGID)),
            GFP_KERNEL,
        )?;
        pr_info!(
            "freeze_processes(2) and snapshot_kernel(2) ready, timeout {} ms\n",
            module_parameters::freeze_timeout_ms.value()
        );
        Ok(Hibsnap {
            _stubborn_tgid: stubborn_tgid,
            _debugfs: dir,
        })
    }
}

/// Turns a syscall's result into its return value: a non-negative value, or a negative errno.
fn syscall_return(result: Result<u32>) -> c_long {
    match result {
        Ok(value) => value as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// The body of `freeze_processes(2)`, called by the C shim in `syscalls.c`.
///
/// # Safety
///
/// Call it in the context of the task that made the system call: it sleeps, and it acts on that
/// task (the freezer) and its tracer. `flags` is the system call's argument, any value.
#[export]
pub unsafe extern "C" fn hibsnap_freeze_processes(flags: c_uint) -> c_long {
    let timeout_ms = module_parameters::freeze_timeout_ms.value();
    let stubborn = STUBBORN_TGID.load(ordering::Relaxed);
    syscall_return(freeze::freeze_processes(flags, timeout_ms, stubborn))
}

/// The body of `snapshot_kernel(2)`, called by the C shim in `syscalls.c`.
///
/// # Safety
///
/// Call it in the context of the task that made the system call: it sleeps, and it installs a
/// file descriptor in that task's table. The arguments are the system call's, any values.
#[export]
pub unsafe extern "C" fn hibsnap_snapshot_kernel(overhead_pages: c_ulong, flags: c_uint) -> c_long {
    let faults = FAULTS.as_ref().map(|faults| faults.as_ref().get_ref());
    syscall_return(snapshot::snapshot_kernel(overhead_pages, flags, faults))
}
