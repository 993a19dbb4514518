// SPDX-License-Identifier: GPL-2.0

//! hibsnap: hibernation by a kernel-only snapshot.
//!
//! Instead of the freezer and a copy of half of RAM, hibsnap stops userspace with an untrappable
//! `SIGSTOP` (`freeze_processes(2)`), lets userspace continue the few helpers it needs, and takes
//! an atomic snapshot of kernel memory only; user pages and the page cache are streamed to
//! userspace afterwards from a file descriptor. See `Documentation/power/hibsnap.rst`.
//!
//! The system calls enter through the C shims in `syscalls.c`, which call the `#[export]`ed
//! functions below; everything else is safe Rust over the abstractions in `rust/kernel/`.

use kernel::{
    ffi::{
        c_long,
        c_uint, //
    },
    prelude::*, //
};

mod freeze;

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

struct Hibsnap;

impl kernel::Module for Hibsnap {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!(
            "freeze_processes(2) ready, timeout {} ms\n",
            module_parameters::freeze_timeout_ms.value()
        );
        Ok(Hibsnap)
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
/// Always safe to call from a syscall context; it is `unsafe` only because `#[export]` requires
/// it.
#[export]
pub unsafe extern "C" fn hibsnap_freeze_processes(flags: c_uint) -> c_long {
    let timeout_ms = module_parameters::freeze_timeout_ms.value();
    syscall_return(freeze::freeze_processes(flags, timeout_ms))
}
