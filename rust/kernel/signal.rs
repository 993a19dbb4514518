// SPDX-License-Identifier: GPL-2.0

//! Sending signals to tasks from kernel code.
//!
//! C header: [`include/linux/sched/signal.h`](srctree/include/linux/sched/signal.h)

use crate::{
    bindings,
    error::{
        to_result,
        Result, //
    },
    ffi::c_int,
    task::Task, //
};

/// A signal number.
///
/// Only the signals kernel code has a use for sending are provided.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Signal(c_int);

impl Signal {
    /// `SIGKILL`: terminate, cannot be caught or ignored.
    pub const KILL: Self = Self(bindings::SIGKILL as c_int);
    /// `SIGSTOP`: stop the thread group, cannot be caught or ignored.
    pub const STOP: Self = Self(bindings::SIGSTOP as c_int);
    /// `SIGCONT`: continue a stopped thread group.
    pub const CONT: Self = Self(bindings::SIGCONT as c_int);

    /// Returns the signal number.
    #[inline]
    pub fn as_raw(self) -> c_int {
        self.0
    }
}

/// Who a signal is sent to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The one thread.
    Thread,
    /// The whole thread group (process) the thread belongs to.
    ThreadGroup,
}

impl Target {
    fn as_raw(self) -> bindings::pid_type {
        match self {
            Target::Thread => bindings::pid_type_PIDTYPE_PID,
            Target::ThreadGroup => bindings::pid_type_PIDTYPE_TGID,
        }
    }
}

/// `SEND_SIG_PRIV`: the signal comes from the kernel itself.
///
/// The C macro is a cast of the integer 1 to a pointer, which bindgen cannot express. The value is
/// only ever compared against by the signal code, never dereferenced.
const SEND_SIG_PRIV: *mut bindings::kernel_siginfo = core::ptr::without_provenance_mut(1);

impl Task {
    /// Returns whether a fatal signal (`SIGKILL`, or a signal whose default action ends the
    /// process and which has no handler) is pending for this task.
    #[inline]
    pub fn fatal_signal_pending(&self) -> bool {
        // SAFETY: `self.as_ptr()` is a valid task by the type invariants of `Task`.
        unsafe { bindings::fatal_signal_pending(self.as_ptr()) != 0 }
    }

    /// Sends `sig` to this task (or its thread group) as a private, kernel-originated signal.
    ///
    /// A private signal is delivered even to tasks that block or ignore it where the signal
    /// allows no handler (`SIGKILL`, `SIGSTOP`), and even to a task that is the init of its pid
    /// namespace. No permission check is made: the caller has done it.
    ///
    /// Returns `ESRCH` if the task has already exited.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::signal::{Signal, Target};
    ///
    /// // Continuing a running task is a no-op.
    /// let me = kernel::current!();
    /// assert!(me.send_signal_private(Signal::CONT, Target::Thread).is_ok());
    /// ```
    #[inline]
    pub fn send_signal_private(&self, sig: Signal, target: Target) -> Result {
        // SAFETY: `self.as_ptr()` is a valid task for the duration of the call by the type
        // invariants of `Task`; `SEND_SIG_PRIV` is the marker value `do_send_sig_info` expects;
        // `do_send_sig_info` takes the sighand lock itself and copes with an exiting task.
        to_result(unsafe {
            bindings::do_send_sig_info(sig.as_raw(), SEND_SIG_PRIV, self.as_ptr(), target.as_raw())
        })
    }

    /// Stops this task's thread group with a private `SIGSTOP`, as
    /// `send_signal_private(Signal::STOP, Target::ThreadGroup)` does, and stops the global init
    /// too, which no signal stops otherwise.
    ///
    /// For a freeze of all of userspace, which continues every group it stopped with
    /// [`Signal::CONT`]; that continues the global init like any other group.
    ///
    /// Returns `ESRCH` if the group has already exited.
    #[cfg(CONFIG_HIBSNAP)]
    #[inline]
    pub fn stop_thread_group(&self) -> Result {
        // SAFETY: `self.as_ptr()` is a valid task for the duration of the call by the type
        // invariants of `Task`; the function takes the sighand lock itself and copes with an
        // exiting task.
        to_result(unsafe { bindings::kernel_stop_thread_group(self.as_ptr()) })
    }
}
