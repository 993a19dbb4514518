// SPDX-License-Identifier: GPL-2.0

//! Walking the task list, and the scheduling and job-control state of tasks.
//!
//! The task list (`init_task.tasks`) holds one entry per thread group (process), its leader; each
//! leader's `signal->thread_head` lists its threads. Both lists are RCU-protected, and a task
//! struct is freed only after an RCU grace period, so the references handed out here live as long
//! as the [`rcu::Guard`] they borrow. Take a reference count (`ARef<Task>`) to keep one longer.
//!
//! C header: [`include/linux/sched/signal.h`](srctree/include/linux/sched/signal.h)

use crate::{
    bindings,
    fmt,
    sync::rcu,
    task::Task,
    types::NotThreadSafe, //
};
use core::{
    marker::PhantomData,
    ptr, //
};

/// Returns an iterator over every thread group leader on the system, kernel threads included.
///
/// Tasks created after the walk started may or may not be seen: a caller that must catch every
/// task walks again until a walk finds nothing new.
///
/// # Examples
///
/// ```
/// use kernel::{sync::rcu, tasklist};
///
/// let guard = rcu::read_lock();
/// let me = kernel::current!();
/// // The current task's thread group is on the list, and we are a kernel thread.
/// assert!(tasklist::processes(&guard).any(|p| p.pid() == me.tgid()));
/// assert!(me.is_kernel_thread());
/// ```
pub fn processes(_guard: &rcu::Guard) -> Processes<'_> {
    // Only the address of `init_task`, a static that lives forever, is taken.
    let head = ptr::addr_of_mut!(bindings::init_task);
    Processes {
        head,
        cur: head,
        _guard: PhantomData,
    }
}

/// A read hold on the task list: `read_lock(&tasklist_lock)`, see [`read_lock`].
///
/// While it is held no task joins or leaves the task list (`fork()` and `exit()` take the lock
/// for writing), and the holder runs with preemption disabled: it must not sleep, and allocates
/// with `GFP_ATOMIC` or within capacity reserved beforehand.
pub struct ReadLock {
    _not_send: NotThreadSafe,
}

/// Takes the task list lock for reading, as the kernel's freezer and `kill(-1, sig)` do to walk
/// every task in one go: a walk that sends signals to many tasks cannot be preempted half-way by
/// the tasks it has not reached yet.
///
/// # Examples
///
/// ```
/// use kernel::{sync::rcu, tasklist};
///
/// let guard = rcu::read_lock();
/// let _tasks = tasklist::read_lock();
/// assert!(tasklist::processes(&guard).count() > 1);
/// ```
pub fn read_lock() -> ReadLock {
    // SAFETY: `tasklist_lock` is a static lock that lives forever; it is released by `Drop`.
    unsafe { bindings::tasklist_read_lock() };
    ReadLock {
        _not_send: NotThreadSafe,
    }
}

impl Drop for ReadLock {
    fn drop(&mut self) {
        // SAFETY: `read_lock` took the lock for reading, on this CPU (`ReadLock` is not `Send`).
        unsafe { bindings::tasklist_read_unlock() };
    }
}

/// An iterator over thread group leaders, see [`processes`].
///
/// # Invariants
///
/// `head` is `&init_task`; `cur` is `head` or a task that was on the task list while the RCU read
/// lock (held for `'a`) was held.
pub struct Processes<'a> {
    head: *mut bindings::task_struct,
    cur: *mut bindings::task_struct,
    _guard: PhantomData<&'a rcu::Guard>,
}

impl<'a> Iterator for Processes<'a> {
    type Item = &'a Task;

    fn next(&mut self) -> Option<&'a Task> {
        // SAFETY: By the type invariants `cur` is a task that was on the RCU-protected task list
        // under the RCU read lock, which is still held, so reading its `tasks.next` is valid.
        let next = unsafe { bindings::next_task(self.cur) };
        if next == self.head {
            return None;
        }
        // INVARIANT: `next` was just read from the task list under the RCU read lock.
        self.cur = next;
        // SAFETY: Tasks on the task list are valid, and are freed only after an RCU grace period,
        // which cannot end while the guard borrowed for `'a` is held.
        Some(unsafe { Task::from_raw_ref(next) })
    }
}

/// An iterator over the threads of one thread group, see [`Task::threads`].
///
/// # Invariants
///
/// `cur` is null or a task that was on its thread group's thread list while the RCU read lock
/// (held for `'a`) was held.
pub struct Threads<'a> {
    cur: *mut bindings::task_struct,
    _guard: PhantomData<&'a rcu::Guard>,
}

impl<'a> Iterator for Threads<'a> {
    type Item = &'a Task;

    fn next(&mut self) -> Option<&'a Task> {
        if self.cur.is_null() {
            return None;
        }
        let this = self.cur;
        // SAFETY: By the type invariants `this` is on its thread list under the RCU read lock.
        // INVARIANT: `__next_thread` returns the next entry of the same list, or null at its end.
        self.cur = unsafe { bindings::__next_thread(this) };
        // SAFETY: Threads are freed only after an RCU grace period, which cannot end while the
        // guard borrowed for `'a` is held.
        Some(unsafe { Task::from_raw_ref(this) })
    }
}

/// A task's command name (`comm`), for log messages.
pub struct Comm([u8; bindings::TASK_COMM_LEN as usize]);

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.0.iter().position(|&c| c == 0).unwrap_or(self.0.len());
        for &c in &self.0[..len] {
            let c = if c.is_ascii_graphic() || c == b' ' {
                c
            } else {
                b'?'
            };
            fmt::Write::write_char(f, char::from(c))?;
        }
        Ok(())
    }
}

impl Task {
    /// Creates a reference to a task from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid task that stays valid for `'a`.
    unsafe fn from_raw_ref<'a>(ptr: *mut bindings::task_struct) -> &'a Task {
        // SAFETY: `Task` is a transparent wrapper of `struct task_struct`, and the caller
        // guarantees `ptr` is valid for `'a`.
        unsafe { &*ptr.cast::<Task>() }
    }

    /// Returns an iterator over the threads of this task's thread group, this task included.
    pub fn threads<'a>(&'a self, _guard: &'a rcu::Guard) -> Threads<'a> {
        // SAFETY: `self` is a valid task, and the RCU read lock is held, as `thread_head` needs.
        let first = unsafe { bindings::task_first_thread(self.as_ptr()) };
        // INVARIANT: `first` is the first entry of the thread list, or null if it is empty.
        Threads {
            cur: first,
            _guard: PhantomData,
        }
    }

    fn flags(&self) -> u32 {
        // SAFETY: The task is valid; `flags` is only modified by the task itself, and a racy read
        // of it is what the C code does too (`READ_ONCE`).
        unsafe { ptr::read_volatile(ptr::addr_of!((*self.as_ptr()).flags)) }
    }

    /// Returns whether this is a kernel thread (`PF_KTHREAD`).
    #[inline]
    pub fn is_kernel_thread(&self) -> bool {
        self.flags() & bindings::PF_KTHREAD != 0
    }

    /// Returns whether this thread has started to exit (`PF_EXITING`).
    #[inline]
    pub fn is_exiting(&self) -> bool {
        self.flags() & bindings::PF_EXITING != 0
    }

    /// Returns whether this thread is in a job-control stop (`T`) or a ptrace stop (`t`).
    #[inline]
    pub fn is_stopped_or_traced(&self) -> bool {
        // SAFETY: The task is valid; the helper reads `jobctl` with `READ_ONCE`.
        unsafe { bindings::task_is_stopped_or_traced(self.as_ptr()) }
    }

    /// Returns whether this thread is asleep in the kernel: in an interruptible, uninterruptible
    /// or killable sleep (`S`, `D`), not stopped, traced or dead. A snapshot: it may wake at any
    /// time.
    #[inline]
    pub fn is_asleep(&self) -> bool {
        // SAFETY: The task is valid; the helper reads `__state` with `READ_ONCE`.
        unsafe { bindings::task_is_asleep(self.as_ptr()) }
    }

    /// Returns whether a group stop is pending for this thread: `SIGSTOP` queued for it or its
    /// group, or the stop under way (`JOBCTL_STOP_PENDING`). A snapshot, read without the
    /// signal lock: a stop that is pending stays so until the thread stops or a `SIGCONT` comes.
    #[inline]
    pub fn stop_pending(&self) -> bool {
        // SAFETY: The task is valid, and so is its `signal` (freed only with the task); the
        // helper only reads `jobctl` and the pending sets.
        unsafe { bindings::task_stop_pending(self.as_ptr()) }
    }

    /// Returns whether this thread's group is in a completed group stop (`SIGNAL_STOP_STOPPED`).
    #[inline]
    pub fn is_group_stopped(&self) -> bool {
        // SAFETY: The task is valid; the helper reads `signal->flags` with `READ_ONCE`.
        unsafe { bindings::task_group_stopped(self.as_ptr()) }
    }

    /// Returns the task tracing this one with ptrace, if any.
    pub fn tracer<'a>(&self, _guard: &'a rcu::Guard) -> Option<&'a Task> {
        // SAFETY: The task is valid and the RCU read lock is held, as `ptrace_parent` requires.
        let tracer = unsafe { bindings::ptrace_parent(self.as_ptr()) };
        if tracer.is_null() {
            None
        } else {
            // SAFETY: The tracer is kept alive by RCU for as long as the guard is held.
            Some(unsafe { Task::from_raw_ref(tracer) })
        }
    }

    /// Kicks the CPU this task is running on, if any, into the kernel (an IPI), so that the task
    /// notices pending work such as a signal promptly.
    #[inline]
    pub fn kick(&self) {
        // SAFETY: The task is valid; `kick_process` copes with a task that is not running.
        unsafe { bindings::kick_process(self.as_ptr()) }
    }

    /// Returns the task's command name, for log messages.
    pub fn comm(&self) -> Comm {
        let mut buf = [0u8; bindings::TASK_COMM_LEN as usize];
        // SAFETY: The task is valid and `buf` is `TASK_COMM_LEN` bytes long; the helper copies
        // the name as `get_task_comm` does, always NUL-terminated.
        unsafe { bindings::task_copy_comm(buf.as_mut_ptr().cast(), self.as_ptr()) };
        Comm(buf)
    }
}
