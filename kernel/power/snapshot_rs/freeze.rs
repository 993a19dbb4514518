// SPDX-License-Identifier: GPL-2.0

//! `freeze_processes(2)`: stop every userspace task except the caller, with an untrappable
//! `SIGSTOP`, and hand the caller a file descriptor that owns the freeze.
//!
//! The freeze walks the task list under RCU and sends each userspace thread group a private
//! `SIGSTOP` (which no handler, mask or init protection can refuse), kicking the CPUs its threads
//! run on. It then walks again until one walk finds every target's threads quiet and no group it
//! has not seen: a task forked during a walk is caught by a later one, and once its parent is
//! stopped, the parent cannot fork again. A thread is quiet when it is in a job-control or ptrace
//! stop, exiting, or asleep in the kernel with its stop pending: such a sleep may never end by
//! itself (I/O on a suspended device, a vfork parent whose child is stopped, a FUSE or NFS wait),
//! and when it does end the thread stops on its way back to user space. Whatever it does in the
//! kernel meanwhile cannot reach an image: user memory is copy-on-write from the atomic point and
//! the disks are snapshotted (`Documentation/power/hibsnap.rst`). A tracer that cancels the
//! `SIGSTOP` of its tracee is itself being stopped; the stop is re-sent to any group that is not
//! stopped yet, so it is finally delivered while the tracer can no longer act.
//!
//! [`Frozen`] records exactly the groups this freeze stopped, each by its leader. Dropping it
//! (the file descriptor's last close, or any error on the way) sends `SIGCONT` to those groups
//! and to no others: a group that was already stopped before the freeze is not recorded, and so
//! stays stopped.

use crate::put_ne;
use core::mem::{
    offset_of,
    size_of, //
};
use kernel::{
    anon_inode::{
        self,
        AnonInodeFile, //
    },
    capability::{
        capable,
        Capability, //
    },
    ioctl::_IOR,
    prelude::*,
    rbtree::RBTree,
    signal::{
        Signal,
        Target, //
    },
    sync::{
        aref::ARef,
        atomic::{
            ordering,
            Atomic,
            AtomicFlag, //
        },
        rcu,
    },
    task::{
        Pid,
        Task, //
    },
    tasklist,
    time::{
        delay::fsleep,
        Delta,
        Instant,
        Monotonic, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
    uapi, //
};

/// Set while a freeze is held; a second `freeze_processes(2)` fails with `EBUSY` meanwhile.
static HELD: AtomicFlag = AtomicFlag::new(false);

/// The thread group that holds the freeze, `0` while none does.
static OWNER: Atomic<Pid> = Atomic::new(0);

/// The right to hold the one freeze the system may have at a time.
struct Held(());

impl Held {
    fn acquire() -> Result<Self> {
        if HELD.cmpxchg(false, true, ordering::Acquire).is_err() {
            return Err(EBUSY);
        }
        Ok(Held(()))
    }

    /// Records `owner` as the holder, until the freeze is released.
    fn owned_by(self, owner: Pid) -> Self {
        OWNER.store(owner, ordering::Relaxed);
        self
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        OWNER.store(0, ordering::Relaxed);
        HELD.store(false, ordering::Release);
    }
}

/// The flags of `freeze_processes(2)`.
#[derive(Debug, PartialEq, Eq)]
struct FreezeFlags(u32);

impl TryFrom<u32> for FreezeFlags {
    type Error = Error;

    fn try_from(flags: u32) -> Result<Self> {
        if flags & !uapi::HIBSNAP_FREEZE_FLAGS_ALL != 0 {
            return Err(EINVAL);
        }
        Ok(FreezeFlags(flags))
    }
}

/// The thread groups a freeze must leave running: the caller's and its tracer's. The global init is
/// left running too: the signal code refuses `SIGSTOP` to it (`sig_task_ignored()`), whoever sends
/// it.
struct Exempt {
    caller: Pid,
    tracer: Option<Pid>,
}

/// What a freeze does with one thread group.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    /// A kernel thread: never touched.
    Kernel,
    /// The caller or its tracer: left running.
    Exempt,
    /// The global init, which cannot be sent `SIGSTOP`: left running.
    GlobalInit,
    /// A userspace thread group to stop.
    Target,
}

impl Exempt {
    fn of_current() -> Self {
        let me = current!();
        let guard = rcu::read_lock();
        Exempt {
            caller: me.tgid(),
            tracer: me.group_leader().tracer(&guard).map(|t| t.tgid()),
        }
    }

    fn classify(&self, leader: &Task) -> Class {
        if leader.is_kernel_thread() {
            Class::Kernel
        } else if leader.is_global_init() {
            Class::GlobalInit
        } else if leader.tgid() == self.caller || Some(leader.tgid()) == self.tracer {
            Class::Exempt
        } else {
            Class::Target
        }
    }
}

/// Where a thread of a target group stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ThreadState {
    /// In a job-control or ptrace stop (`T`, `t`), or exiting.
    Stopped,
    /// Asleep in the kernel with its stop pending: it stops on its way back to user space.
    Asleep,
    /// Running, or asleep without its stop pending (the stop is sent again).
    Running,
}

fn thread_state(t: &Task) -> ThreadState {
    if t.is_stopped_or_traced() || t.is_exiting() {
        ThreadState::Stopped
    } else if t.is_asleep() && t.stop_pending() {
        ThreadState::Asleep
    } else {
        ThreadState::Running
    }
}

/// Whether every thread of `leader`'s group is quiet: stopped, exiting, or asleep with its stop
/// pending.
fn group_quiet(leader: &Task, guard: &rcu::Guard) -> bool {
    leader
        .threads(guard)
        .all(|t| thread_state(t) != ThreadState::Running)
}

/// Whether `set` holds this very task for its tgid (a tgid may be reused after an exit).
fn holds(set: &RBTree<Pid, ARef<Task>>, task: &Task) -> bool {
    set.get(&task.tgid())
        .is_some_and(|t| t.as_ptr() == task.as_ptr())
}

/// The thread groups a freeze stopped; dropping it continues them.
struct StopSet {
    /// Groups stopped by us, by tgid, each held by its leader.
    stopped: RBTree<Pid, ARef<Task>>,
    /// Groups found already stopped when first seen: never continued by us.
    prestopped: RBTree<Pid, ARef<Task>>,
    /// A thread group to treat as never quiet, for tests of the timeout (`0`: none).
    stubborn: Pid,
}

/// What one walk over the task list found.
struct Walk {
    /// Groups seen for the first time: to stop, or recorded as already stopped.
    new: KVec<ARef<Task>>,
    /// Whether every known target group had fully stopped.
    all_stopped: bool,
}

impl StopSet {
    fn new(stubborn: Pid) -> Self {
        StopSet {
            stopped: RBTree::new(),
            prestopped: RBTree::new(),
            stubborn,
        }
    }

    /// Whether `leader`'s group counts as quiet.
    fn quiet(&self, leader: &Task, guard: &rcu::Guard) -> bool {
        leader.tgid() != self.stubborn && group_quiet(leader, guard)
    }

    /// Counts the groups held and their threads by state, now.
    fn status(&self) -> Status {
        let guard = rcu::read_lock();
        let mut status = Status::default();
        for leader in Iterator::chain(self.stopped.values(), self.prestopped.values()) {
            status.groups += 1;
            for t in leader.threads(&guard) {
                match thread_state(t) {
                    ThreadState::Stopped => status.stopped += 1,
                    ThreadState::Asleep => status.asleep += 1,
                    ThreadState::Running => status.running += 1,
                }
            }
        }
        status
    }

    /// Walks the task list once: stops groups not seen before, re-sends the stop to our groups
    /// that have not stopped yet, and reports what it found.
    fn walk(&self, exempt: &Exempt) -> Walk {
        let mut walk = Walk {
            new: KVec::new(),
            all_stopped: true,
        };
        let guard = rcu::read_lock();
        for leader in tasklist::processes(&guard) {
            if exempt.classify(leader) != Class::Target {
                continue;
            }
            if holds(&self.prestopped, leader) {
                if leader.is_group_stopped() {
                    continue;
                }
                // Someone continued it since: it is a target like any other now.
                walk.all_stopped = false;
                if walk.new.push(ARef::from(leader), GFP_ATOMIC).is_err() {
                    break;
                }
                continue;
            }
            if holds(&self.stopped, leader) {
                if !self.quiet(leader, &guard) {
                    walk.all_stopped = false;
                    // A tracer may have cancelled the stop, or the group may be mid-exec: send it
                    // again, and kick every thread so that running ones notice it now.
                    let _ = leader.send_signal_private(Signal::STOP, Target::ThreadGroup);
                    leader.threads(&guard).for_each(Task::kick);
                }
                continue;
            }
            // A group not seen before. Memory cannot be reclaimed under RCU; if the atomic
            // allocation fails, the group is simply found again by the next walk.
            walk.all_stopped = false;
            if walk.new.push(ARef::from(leader), GFP_ATOMIC).is_err() {
                break;
            }
        }
        walk
    }

    /// Records and stops the groups a walk found.
    fn stop_new(&mut self, new: KVec<ARef<Task>>) -> Result {
        for leader in new {
            let tgid = leader.tgid();
            if leader.is_group_stopped() {
                self.prestopped
                    .try_create_and_insert(tgid, leader, GFP_KERNEL)?;
                continue;
            }
            self.prestopped.remove(&tgid);
            // Recorded before the signal is sent, so that an error cannot leave it stopped.
            self.stopped
                .try_create_and_insert(tgid, leader.clone(), GFP_KERNEL)?;
            // `ESRCH` means the group exited meanwhile: nothing to stop, and nothing to continue.
            let _ = leader.send_signal_private(Signal::STOP, Target::ThreadGroup);
            let guard = rcu::read_lock();
            leader.threads(&guard).for_each(Task::kick);
        }
        Ok(())
    }

    /// Logs the threads that are not quiet, for a freeze that timed out.
    fn report_stubborn(&self, timeout_ms: u32) {
        let guard = rcu::read_lock();
        for leader in self.stopped.values() {
            let stubborn = leader.tgid() == self.stubborn;
            for t in leader.threads(&guard) {
                if stubborn || thread_state(t) == ThreadState::Running {
                    pr_err!(
                        "freeze: task {}:{} (thread group {}) did not stop within {} ms\n",
                        t.comm(),
                        t.pid(),
                        leader.tgid(),
                        timeout_ms
                    );
                }
            }
        }
    }
}

impl Drop for StopSet {
    fn drop(&mut self) {
        for leader in self.stopped.values() {
            // `ESRCH`: the group exited while stopped, there is nothing left to continue.
            let _ = leader.send_signal_private(Signal::CONT, Target::ThreadGroup);
        }
    }
}

/// The threads of the groups a freeze holds, by state (`struct hibsnap_freeze_status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Status {
    groups: u32,
    stopped: u32,
    asleep: u32,
    running: u32,
}

impl Status {
    /// The status in its UAPI layout, native-endian.
    fn to_uapi(self) -> [u8; size_of::<uapi::hibsnap_freeze_status>()] {
        type S = uapi::hibsnap_freeze_status;
        let mut out = [0u8; size_of::<S>()];
        put_ne(&mut out, offset_of!(S, groups), &self.groups.to_ne_bytes());
        put_ne(
            &mut out,
            offset_of!(S, stopped),
            &self.stopped.to_ne_bytes(),
        );
        put_ne(&mut out, offset_of!(S, asleep), &self.asleep.to_ne_bytes());
        put_ne(
            &mut out,
            offset_of!(S, running),
            &self.running.to_ne_bytes(),
        );
        out
    }
}

/// `HIBSNAP_IOC_FREEZE_STATUS`.
const IOC_FREEZE_STATUS: u32 = _IOR::<uapi::hibsnap_freeze_status>(uapi::HIBSNAP_IOC_MAGIC, 0x02);

/// A held freeze: the object behind the file descriptor `freeze_processes(2)` returns.
#[pin_data]
struct Frozen {
    // Field order matters: the tasks are continued (`stop_set` dropped) before the freeze is
    // released.
    stop_set: StopSet,
    _held: Held,
}

#[vtable]
impl AnonInodeFile for Frozen {
    const NAME: &'static CStr = c"[hibsnap-freeze]";

    fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            IOC_FREEZE_STATUS => {
                let bytes = self.stop_set.status().to_uapi();
                UserSlice::new(UserPtr::from_addr(arg), bytes.len())
                    .writer()
                    .write_slice(&bytes)?;
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }
}

/// Stops every target thread group; returns when all are quiet (stopped, or asleep in the kernel
/// with their stop pending).
fn stop_all(exempt: &Exempt, timeout_ms: u32, stubborn: Pid) -> Result<StopSet> {
    let mut set = StopSet::new(stubborn);
    let start = Instant::<Monotonic>::now();
    let mut nap = Delta::from_micros(100);
    loop {
        let walk = set.walk(exempt);
        if walk.all_stopped && walk.new.is_empty() {
            return Ok(set);
        }
        set.stop_new(walk.new)?;
        if current!().fatal_signal_pending() {
            return Err(EINTR);
        }
        if start.elapsed().as_millis() >= i64::from(timeout_ms) {
            set.report_stubborn(timeout_ms);
            return Err(ETIMEDOUT);
        }
        fsleep(nap);
        nap = Delta::from_micros((nap.as_micros_ceil() * 2).min(10_000));
    }
}

/// `freeze_processes(2)`: returns the file descriptor that owns the freeze.
///
/// `stubborn` names a thread group to treat as never quiet, for tests of the timeout (`0`: none).
pub(crate) fn freeze_processes(flags: u32, timeout_ms: u32, stubborn: u32) -> Result<u32> {
    FreezeFlags::try_from(flags)?;
    if !capable(Capability::SysAdmin) {
        return Err(EPERM);
    }
    let held = Held::acquire()?;
    let start = Instant::<Monotonic>::now();
    let stubborn = Pid::try_from(stubborn).unwrap_or(0);
    let stop_set = stop_all(&Exempt::of_current(), timeout_ms, stubborn)?;
    let status = stop_set.status();
    pr_debug!(
        "freeze: {} thread groups held ({} already stopped), {} threads stopped, {} asleep, in {} us\n",
        status.groups,
        stop_set.prestopped.values().count(),
        status.stopped,
        status.asleep,
        start.elapsed().as_micros_ceil()
    );
    let held = held.owned_by(current!().tgid());
    anon_inode::install_fd(try_pin_init!(Frozen {
        stop_set,
        _held: held,
    }? Error))
}

/// Whether the calling process holds the freeze.
pub(crate) fn held_by_current() -> bool {
    HELD.load(ordering::Acquire) && OWNER.load(ordering::Relaxed) == current!().tgid()
}

#[cfg(CONFIG_HIBSNAP_KUNIT_TEST)]
#[kunit_tests(hibsnap_freeze)]
mod tests {
    use super::*;

    #[test]
    fn unknown_flags_are_einval() {
        assert_eq!(FreezeFlags::try_from(0), Ok(FreezeFlags(0)));
        assert_eq!(FreezeFlags::try_from(1), Err(EINVAL));
        assert_eq!(FreezeFlags::try_from(1 << 31), Err(EINVAL));
    }

    #[test]
    fn one_freeze_at_a_time() -> Result {
        let first = Held::acquire()?;
        assert_eq!(Held::acquire().err(), Some(EBUSY));
        drop(first);
        let again = Held::acquire()?;
        drop(again);
        Ok(())
    }

    #[test]
    fn kernel_threads_are_never_targets() {
        let exempt = Exempt {
            caller: -1,
            tracer: None,
        };
        let guard = rcu::read_lock();
        for leader in tasklist::processes(&guard) {
            if leader.is_kernel_thread() {
                assert_eq!(exempt.classify(leader), Class::Kernel);
            }
        }
        // This test runs in a kernel thread.
        let me = current!();
        assert_eq!(exempt.classify(me), Class::Kernel);
    }
}
