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

use crate::uapi::UapiFreezeStatus;
use core::mem::size_of;
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
        new_spinlock,
        rcu,
        Arc,
        Completion,
        SpinLock, //
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
    uapi,
    workqueue::{
        self,
        impl_has_work,
        new_work,
        Work,
        WorkItem, //
    }, //
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
/// stopped like any other group ([`Task::stop_thread_group`]).
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

/// A thread group a walk saw for the first time.
struct Found {
    leader: ARef<Task>,
    /// Whether the walk sent it the stop; if not, it was already stopped.
    stopped_by_us: bool,
}

/// What one walk over the task list found.
struct Walk {
    /// Groups seen for the first time, to record.
    new: KVVec<Found>,
    /// Whether every known target group was quiet, and no new one was found.
    all_quiet: bool,
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

    /// Walks the task list once, in one go under the task list lock: stops the groups not seen
    /// before, re-sends the stop to our groups that are not quiet yet, and reports what it found.
    ///
    /// Sending every stop before the caller can be preempted is what keeps a freeze short when
    /// many tasks spin: a task already told to stop gives the CPU up as soon as it gets it.
    /// `room` is how many new groups the walk may take; the rest are found by the next walk.
    fn walk(&self, exempt: &Exempt, room: usize) -> Result<Walk> {
        let mut walk = Walk {
            new: KVVec::with_capacity(room, GFP_KERNEL)?,
            all_quiet: true,
        };
        let guard = rcu::read_lock();
        let _tasks = tasklist::read_lock();
        for leader in tasklist::processes(&guard) {
            if exempt.classify(leader) != Class::Target {
                continue;
            }
            let known_stopped = holds(&self.stopped, leader);
            if known_stopped {
                if !self.quiet(leader, &guard) {
                    walk.all_quiet = false;
                    // A tracer may have cancelled the stop, or the group may be mid-exec: send it
                    // again, and kick every thread so that running ones notice it now.
                    signalled("stop", leader, leader.stop_thread_group());
                    leader.threads(&guard).for_each(Task::kick);
                }
                continue;
            }
            // A group not seen before, or one that was stopped when first seen and that someone
            // has continued since: a target like any other now.
            let already = leader.is_group_stopped();
            if already && holds(&self.prestopped, leader) {
                continue;
            }
            walk.all_quiet = false;
            let found = Found {
                leader: ARef::from(leader),
                stopped_by_us: !already,
            };
            if walk.new.push_within_capacity(found).is_err() {
                break;
            }
            if !already {
                // `ESRCH`: the group is exiting, which counts as quiet; recorded all the same.
                signalled("stop", leader, leader.stop_thread_group());
                leader.threads(&guard).for_each(Task::kick);
            }
        }
        Ok(walk)
    }

    /// Records the groups a walk found. Should recording fail, the groups the walk stopped and
    /// that are not recorded yet are continued before the error is returned.
    fn record(&mut self, new: KVVec<Found>) -> Result {
        let mut new = new.into_iter();
        while let Some(found) = new.next() {
            let tgid = found.leader.tgid();
            let recorded = if found.stopped_by_us {
                self.prestopped.remove(&tgid);
                self.stopped
                    .try_create_and_insert(tgid, found.leader.clone(), GFP_KERNEL)
            } else {
                self.prestopped
                    .try_create_and_insert(tgid, found.leader.clone(), GFP_KERNEL)
            };
            if let Err(e) = recorded {
                for f in Iterator::chain(core::iter::once(found), new) {
                    if f.stopped_by_us {
                        let sent = f
                            .leader
                            .send_signal_private(Signal::CONT, Target::ThreadGroup);
                        signalled("continue", &f.leader, sent);
                    }
                }
                return Err(e);
            }
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

/// Continues `groups`, in one go under the task list lock (`_tasks`), as the stops were sent.
fn continue_groups<'a>(_tasks: &tasklist::ReadLock, groups: impl Iterator<Item = &'a ARef<Task>>) {
    for leader in groups {
        // `ESRCH`: the group exited while stopped, there is nothing left to continue.
        let sent = leader.send_signal_private(Signal::CONT, Target::ThreadGroup);
        signalled("continue", leader, sent);
    }
}

/// The outcome of a stop or continue sent to the thread group of `leader`. `ESRCH`, the group
/// has exited, is what a freeze expects of some groups and means nothing is left to do; any other
/// error would be a bug in the signal sent, and is logged.
fn signalled(what: &str, leader: &Task, sent: Result) {
    match sent {
        Ok(()) => {}
        Err(e) if e == ESRCH => {}
        Err(e) => pr_warn!(
            "freeze: {} of thread group {} failed: {:?}\n",
            what,
            leader.tgid(),
            e
        ),
    }
}

/// The release of a freeze, run by a high-priority worker while the releasing task waits.
///
/// Waking thousands of tasks takes CPU time; charged to the releasing task, it would keep that
/// task off the CPU (EEVDF's lag) until every task it woke had run as long: seconds, with
/// a thousand busy tasks on two CPUs, before `close()` returns. The worker wakes the releasing
/// task before it can itself be preempted by the tasks it continued, and only then drops its
/// references on them and frees the set, which the releasing task does not wait for.
#[pin_data]
struct Release {
    /// The groups the freeze stopped: filled once the work item exists, taken by the worker.
    #[pin]
    groups: SpinLock<Option<RBTree<Pid, ARef<Task>>>>,
    #[pin]
    done: Completion,
    #[pin]
    work: Work<Release>,
}

impl_has_work! {
    impl HasWork<Self> for Release { self.work }
}

impl WorkItem for Release {
    type Pointer = Arc<Release>;

    fn run(this: Arc<Release>) {
        let groups = this.groups.lock().take();
        let tasks = tasklist::read_lock();
        if let Some(groups) = &groups {
            continue_groups(&tasks, groups.values());
        }
        // The releasing task is woken while the lock still keeps this CPU from switching: the
        // tasks just continued cannot preempt the worker before it, which would leave the
        // releasing task waiting for the worker's next turn among them.
        this.done.complete_all();
        drop(tasks);
        drop(groups);
    }
}

impl Release {
    /// Continues `groups` from a worker, and waits until it has. Without memory for the work
    /// item, continues them from here.
    fn run_and_wait(groups: RBTree<Pid, ARef<Task>>) {
        let release = match Arc::pin_init(
            pin_init!(Release {
                groups <- new_spinlock!(None, "hibsnap::freeze::Release::groups"),
                done <- Completion::new(),
                work <- new_work!("hibsnap::freeze::Release::work"),
            }),
            GFP_KERNEL,
        ) {
            Ok(release) => release,
            Err(_) => {
                continue_groups(&tasklist::read_lock(), groups.values());
                return;
            }
        };
        *release.groups.lock() = Some(groups);
        if let Err(release) = workqueue::system_highpri().enqueue(release.clone()) {
            // Never queued before, so this does not happen; continued from here if it did.
            if let Some(groups) = release.groups.lock().take() {
                continue_groups(&tasklist::read_lock(), groups.values());
            }
            return;
        }
        release.done.wait_for_completion();
    }
}

impl Drop for StopSet {
    fn drop(&mut self) {
        Release::run_and_wait(core::mem::take(&mut self.stopped));
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
    /// The status as `HIBSNAP_IOC_FREEZE_STATUS` returns it.
    fn to_uapi(self) -> UapiFreezeStatus {
        UapiFreezeStatus(uapi::hibsnap_freeze_status {
            groups: self.groups,
            stopped: self.stopped,
            asleep: self.asleep,
            running: self.running,
        })
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
                let status = self.stop_set.status().to_uapi();
                UserSlice::new(UserPtr::from_addr(arg), size_of::<UapiFreezeStatus>())
                    .writer()
                    .write(&status)?;
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
    // Room for every process at the first walk, a margin for forks later.
    let mut room = 64;
    {
        let guard = rcu::read_lock();
        room += tasklist::processes(&guard).count();
    }
    loop {
        let walk = set.walk(exempt, room)?;
        if walk.all_quiet {
            return Ok(set);
        }
        room = room.max(2 * walk.new.len());
        set.record(walk.new)?;
        if current!().fatal_signal_pending() {
            return Err(EINTR);
        }
        if start.elapsed().as_millis() >= i64::from(timeout_ms) {
            set.report_stubborn(timeout_ms);
            return Err(ETIMEDOUT);
        }
        fsleep(nap);
        nap = Delta::from_micros((nap.as_micros_ceil() * 2).min(8_000));
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
        "freeze: {} thread groups held ({} already stopped), {} threads stopped, {} asleep, \
         in {} us\n",
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
