// SPDX-License-Identifier: GPL-2.0
/*
 * Tests of freeze_processes(2): every userspace task but the caller (and
 * its tracer) ends up stopped, and exactly those tasks run again when the
 * freeze's file descriptor is closed. See Documentation/power/hibsnap.rst.
 *
 * Each test reads task states from /proc/PID/stat: the syscall's contract
 * is that every target is stopped when it returns, and closing the fd
 * continues them before close() returns, so no test sleeps and hopes.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/hibsnap.h>

#include "../kselftest_harness.h"
#include "hibsnap_util.h"

#define MAX_CHILDREN 1100
/* A dm-linear device over /dev/ram3 that the sleeper tests suspend. */
#define SLEEP_NAME "hssleep"
#define SLEEP_DEV "/dev/mapper/" SLEEP_NAME
#define STUBBORN_TGID "/sys/kernel/debug/hibsnap/stubborn_tgid"

static pid_t proc_ppid(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd, ppid;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

/* The first child of @parent found in /proc, or -1. */
static pid_t find_child(pid_t parent)
{
	struct dirent *de;
	pid_t found = -1;
	DIR *d = opendir("/proc");

	if (!d)
		return -1;
	while (found < 0 && (de = readdir(d))) {
		pid_t pid = atoi(de->d_name);

		if (pid > 0 && proc_ppid(pid) == parent)
			found = pid;
	}
	closedir(d);
	return found;
}

static bool stopped(pid_t pid)
{
	char s = proc_state(pid);

	return s == 'T' || s == 't';
}

/* Every thread of @pid is stopped (T or t). */
static bool all_threads_stopped(pid_t pid)
{
	char path[64];
	struct dirent *de;
	bool ok = true;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	d = opendir(path);
	if (!d)
		return false;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (!stopped(atoi(de->d_name)))
			ok = false;
	}
	closedir(d);
	return ok;
}

static int count_fds(void)
{
	struct dirent *de;
	int n = 0;
	DIR *d = opendir("/proc/self/fd");

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own fd */
}

/* Spin in user mode forever; the empty asm keeps the loop from being optimized out. */
static void busy_loop(void)
{
	for (;;)
		__asm__ __volatile__("" ::: "memory");
}

static void pause_forever(void)
{
	for (;;)
		pause();
}

/* The children a test spawned, killed by the teardown. */
static pid_t children[MAX_CHILDREN];
static int nr_children;

FIXTURE(freeze)
{
	int fd;
};

FIXTURE_SETUP(freeze)
{
	nr_children = 0;
	self->fd = -1;
	/* Children die with the test process, whatever happens. */
	ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
}

FIXTURE_TEARDOWN(freeze)
{
	int i;

	if (self->fd >= 0)
		close(self->fd);
	/* A sleeper test that failed may leave its device suspended, its tasks in D. */
	run(NULL, 0, "dmsetup resume " SLEEP_NAME " 2>/dev/null; dmsetup remove " SLEEP_NAME
	    " 2>/dev/null");
	for (i = 0; i < nr_children; i++) {
		kill(-children[i], SIGKILL);
		kill(children[i], SIGKILL);
	}
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
}

/* Fork a child that runs @fn; it is killed by the teardown. */
static pid_t spawn(void (*fn)(void *), void *arg)
{
	pid_t pid;

	if (nr_children == MAX_CHILDREN)
		return -1;
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fn(arg);
		_exit(0);
	}
	if (pid > 0)
		children[nr_children++] = pid;
	return pid;
}

static void run_busy(void *arg)
{
	(void)arg;
	busy_loop();
}

static void run_pipe_reader(void *arg)
{
	int *fds = arg;
	char c;

	close(fds[1]);
	while (read(fds[0], &c, 1) == 1)
		;
	_exit(0);
}

static void run_sleeper(void *arg)
{
	(void)arg;
	for (;;)
		sleep(100);
}

static void run_pause(void *arg)
{
	(void)arg;
	pause_forever();
}

static void *thread_busy(void *arg)
{
	(void)arg;
	busy_loop();
	return NULL;
}

/* Busy, blocked and sleeping children all end up in T; the caller runs on. */
TEST_F(freeze, busy_and_blocked_children_stop)
{
	int pipefd[2], i;

	ASSERT_EQ(0, pipe(pipefd));
	ASSERT_GT(spawn(run_busy, NULL), 0);
	ASSERT_GT(spawn(run_busy, NULL), 0);
	ASSERT_GT(spawn(run_pipe_reader, pipefd), 0);
	ASSERT_GT(spawn(run_sleeper, NULL), 0);
	ASSERT_GT(spawn(run_pause, NULL), 0);
	close(pipefd[0]);

	self->fd = sys_freeze_processes(0);
	ASSERT_GE(self->fd, 0) TH_LOG("freeze_processes: %s", strerror(errno));
	for (i = 0; i < nr_children; i++)
		EXPECT_EQ('T', proc_state(children[i]))
			TH_LOG("child %d", children[i]);

	/* The caller runs on, and is not stopped. */
	EXPECT_NE('T', proc_state(getpid()));
	/* The global init is stopped too. */
	EXPECT_EQ('T', proc_state(1));
	/* The fd is close-on-exec. */
	EXPECT_EQ(FD_CLOEXEC, fcntl(self->fd, F_GETFD) & FD_CLOEXEC);

	ASSERT_EQ(0, close(self->fd));
	self->fd = -1;
	for (i = 0; i < nr_children; i++)
		EXPECT_FALSE(stopped(children[i]))
			TH_LOG("child %d still '%c'", children[i],
			       proc_state(children[i]));
	/* The pipe reader still works after the freeze. */
	EXPECT_EQ(1, write(pipefd[1], "x", 1));
	close(pipefd[1]);
}

static void run_multithreaded(void *arg)
{
	pthread_t t;
	int i;

	(void)arg;
	for (i = 0; i < 3; i++)
		pthread_create(&t, NULL, thread_busy, NULL);
	busy_loop();
}

/* Every thread of a multi-threaded process stops. */
TEST_F(freeze, all_threads_stop)
{
	pid_t pid;
	char path[64];
	int tries = 0;

	pid = spawn(run_multithreaded, NULL);
	ASSERT_GT(pid, 0);
	/* Wait until its threads exist (4 entries in /proc/PID/task). */
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	for (;;) {
		struct dirent *de;
		int n = 0;
		DIR *d = opendir(path);

		ASSERT_NE(NULL, d);
		while ((de = readdir(d)))
			n += de->d_name[0] != '.';
		closedir(d);
		if (n == 4)
			break;
		ASSERT_LT(tries++, 10000);
		usleep(1000);
	}
	self->fd = sys_freeze_processes(0);
	ASSERT_GE(self->fd, 0);
	EXPECT_TRUE(all_threads_stopped(pid));
}

struct tracer_args {
	pid_t tracee;
	int ready[2];	/* tracer -> test: attached */
	int ping[2];	/* test -> tracer */
	int pong[2];	/* tracer -> test */
};

/* Attach to the test process and answer pings: must run while frozen. */
static void run_tracer_of_caller(void *arg)
{
	struct tracer_args *a = arg;
	char c;

	if (ptrace(PTRACE_SEIZE, a->tracee, 0, 0))
		_exit(1);
	if (write(a->ready[1], "r", 1) != 1)
		_exit(1);
	while (read(a->ping[0], &c, 1) == 1)
		if (write(a->pong[1], &c, 1) != 1)
			_exit(1);
	_exit(0);
}

/* The caller's tracer is exempt: it keeps running during the freeze. */
TEST_F(freeze, callers_tracer_is_exempt)
{
	struct tracer_args a = { .tracee = getpid() };
	pid_t tracer, other;
	sigset_t chld;
	char c;

	/*
	 * A traced task stops for every signal it is sent, even an ignored
	 * one, until its tracer acts: keep SIGCHLD (children stopping and
	 * continuing) blocked so that our tracer needs to do nothing.
	 */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	ASSERT_EQ(0, sigprocmask(SIG_BLOCK, &chld, NULL));

	ASSERT_EQ(0, pipe(a.ready));
	ASSERT_EQ(0, pipe(a.ping));
	ASSERT_EQ(0, pipe(a.pong));
	/* Let the child attach to us even with Yama. */
	prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY);
	tracer = spawn(run_tracer_of_caller, &a);
	ASSERT_GT(tracer, 0);
	ASSERT_EQ(1, read(a.ready[0], &c, 1));
	other = spawn(run_busy, NULL);
	ASSERT_GT(other, 0);

	self->fd = sys_freeze_processes(0);
	ASSERT_GE(self->fd, 0);
	EXPECT_EQ('T', proc_state(other));
	EXPECT_FALSE(stopped(tracer));
	/* The tracer answers while everything else is stopped. */
	ASSERT_EQ(1, write(a.ping[1], "p", 1));
	ASSERT_EQ(1, read(a.pong[0], &c, 1));
	EXPECT_EQ('p', c);
}

/* A hostile tracer: resumes its tracee from every stop it sees. */
static void run_hostile_tracer(void *arg)
{
	pid_t tracee = *(pid_t *)arg;
	int status;

	if (ptrace(PTRACE_SEIZE, tracee, 0, 0))
		_exit(1);
	for (;;) {
		if (waitpid(tracee, &status, __WALL) < 0)
			_exit(0);
		ptrace(PTRACE_CONT, tracee, 0, 0);
	}
}

/* A traced task is stopped too: its tracer cannot swallow the stop. */
TEST_F(freeze, traced_child_is_stopped)
{
	pid_t tracee, tracer;
	int i;

	tracee = spawn(run_busy, NULL);
	ASSERT_GT(tracee, 0);
	tracer = spawn(run_hostile_tracer, &tracee);
	ASSERT_GT(tracer, 0);
	/* Wait for the attach: the tracee's TracerPid is the tracer. */
	for (i = 0;; i++) {
		char path[64], line[128];
		int tp = 0;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/status", tracee);
		f = fopen(path, "re");
		ASSERT_NE(NULL, f);
		while (fgets(line, sizeof(line), f))
			sscanf(line, "TracerPid: %d", &tp);
		fclose(f);
		if (tp == tracer)
			break;
		ASSERT_LT(i, 10000);
		usleep(1000);
	}

	self->fd = sys_freeze_processes(0);
	ASSERT_GE(self->fd, 0);
	EXPECT_EQ('T', proc_state(tracer));
	EXPECT_TRUE(stopped(tracee)) TH_LOG("tracee is '%c'", proc_state(tracee));
	ASSERT_EQ(0, close(self->fd));
	self->fd = -1;
	/* The tracer runs again; the tracee is in its hands, as with any signal. */
	EXPECT_FALSE(stopped(tracer));
}

/* Fork children as fast as possible; each child forks a grandchild. */
static void run_fork_loop(void *arg)
{
	int i;

	(void)arg;
	setpgid(0, 0);
	for (i = 0; i < 300; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			if (fork() < 0)
				_exit(1);
			pause_forever();
		}
		if (pid < 0)
			break;
	}
	busy_loop();
}

struct proc_entry {
	pid_t pid, ppid;
	char state;
};

/* Every process in /proc with its parent and state, read once. */
static int read_procs(struct proc_entry *procs, int max)
{
	struct dirent *de;
	int n = 0;
	DIR *d = opendir("/proc");

	if (!d)
		return -1;
	while (n < max && (de = readdir(d))) {
		pid_t pid = atoi(de->d_name);

		if (pid <= 0)
			continue;
		procs[n].pid = pid;
		procs[n].ppid = proc_ppid(pid);
		procs[n].state = proc_state(pid);
		if (procs[n].ppid >= 0)
			n++;
	}
	closedir(d);
	return n;
}

/* A process forking in a loop is stopped together with all its descendants. */
TEST_F_TIMEOUT(freeze, fork_loop_stopped_with_descendants, 300)
{
	static struct proc_entry procs[4096];
	pid_t forker, tree[4096];
	int nprocs, ntree = 1, depth2 = 0, running = 0, i, j;

	forker = spawn(run_fork_loop, NULL);
	ASSERT_GT(forker, 0);
	/* Let it fork a while. */
	usleep(100000);

	self->fd = sys_freeze_processes(0);
	ASSERT_GE(self->fd, 0);
	nprocs = read_procs(procs, 4096);
	ASSERT_GT(nprocs, 0);
	/* Breadth-first over the forker's descendants. */
	tree[0] = forker;
	for (i = 0; i < ntree; i++) {
		for (j = 0; j < nprocs && ntree < 4096; j++) {
			if (procs[j].ppid != tree[i])
				continue;
			tree[ntree++] = procs[j].pid;
			if (i > 0)
				depth2++;
			if (procs[j].state != 'T' && procs[j].state != 'Z') {
				running++;
				TH_LOG("descendant %d is '%c'", procs[j].pid, procs[j].state);
			}
		}
	}
	TH_LOG("forker had %d descendants (%d grandchildren), all stopped",
	       ntree - 1, depth2);
	EXPECT_EQ('T', proc_state(forker));
	EXPECT_GT(ntree - 1, 0);
	EXPECT_EQ(0, running);
}

/* A process stopped before the freeze stays stopped after it. */
TEST_F(freeze, prestopped_stays_stopped)
{
	pid_t pre, other;
	int status;

	pre = spawn(run_pause, NULL);
	other = spawn(run_pause, NULL);
	ASSERT_GT(pre, 0);
	ASSERT_GT(other, 0);
	ASSERT_EQ(0, kill(pre, SIGSTOP));
	ASSERT_EQ(pre, waitpid(pre, &status, WUNTRACED));
	ASSERT_TRUE(WIFSTOPPED(status));

	self->fd = sys_freeze_processes(0);
	ASSERT_GE(self->fd, 0);
	EXPECT_EQ('T', proc_state(pre));
	EXPECT_EQ('T', proc_state(other));
	ASSERT_EQ(0, close(self->fd));
	self->fd = -1;
	EXPECT_EQ('T', proc_state(pre));
	EXPECT_FALSE(stopped(other));
}

/*
 * The init of a PID namespace (a container's init): pid 1 in its namespace,
 * it reports the global pid of a child of its own, then both spin. /proc is
 * the initial namespace's, so /proc/self names the global pid.
 */
static void run_pidns_init(void *arg)
{
	int *fds = arg;
	char self[32];
	ssize_t n;

	if (fork() == 0) {
		n = readlink("/proc/self", self, sizeof(self));
		if (n <= 0 || write(fds[1], self, n) != n)
			_exit(1);
		busy_loop();
	}
	busy_loop();
}

/* The pid of @pid in its innermost namespace (the last field of NSpid), or -1. */
static pid_t innermost_pid(pid_t pid)
{
	char value[128], *last;

	if (proc_status(pid, "NSpid:", value, sizeof(value)))
		return -1;
	last = strrchr(value, '\t');
	return last ? atoi(last + 1) : -1;
}

/*
 * The global init is stopped by the freeze and continued by its release,
 * while a SIGSTOP from userspace still cannot stop it.
 */
TEST_F(freeze, global_init_stopped_and_continued)
{
	ASSERT_EQ(0, kill(1, SIGSTOP));
	EXPECT_FALSE(stopped(1)) TH_LOG("kill(1, SIGSTOP) stopped init");

	self->fd = sys_freeze_processes(0);
	ASSERT_GE(self->fd, 0) TH_LOG("freeze_processes: %s", strerror(errno));
	EXPECT_EQ('T', proc_state(1));

	ASSERT_EQ(0, close(self->fd));
	self->fd = -1;
	EXPECT_FALSE(stopped(1)) TH_LOG("init still '%c'", proc_state(1));
	/* And a userspace SIGSTOP is still dropped after the freeze. */
	ASSERT_EQ(0, kill(1, SIGSTOP));
	EXPECT_FALSE(stopped(1));
}

/* A container's init and its child are stopped and continued like any process. */
TEST_F(freeze, pid_namespace_init_and_child)
{
	char buf[32] = { 0 };
	pid_t nsinit, child;
	int fds[2];

	ASSERT_EQ(0, pipe(fds));
	/* The next child of this test process is the init of a new PID namespace. */
	ASSERT_EQ(0, unshare(CLONE_NEWPID)) TH_LOG("unshare: %s", strerror(errno));
	nsinit = spawn(run_pidns_init, fds);
	ASSERT_GT(nsinit, 0);
	close(fds[1]);
	ASSERT_GT(read(fds[0], buf, sizeof(buf) - 1), 0);
	close(fds[0]);
	child = atoi(buf);
	ASSERT_GT(child, 0);
	ASSERT_EQ(1, innermost_pid(nsinit));
	ASSERT_EQ(2, innermost_pid(child));

	self->fd = sys_freeze_processes(0);
	ASSERT_GE(self->fd, 0) TH_LOG("freeze_processes: %s", strerror(errno));
	EXPECT_EQ('T', proc_state(nsinit));
	EXPECT_EQ('T', proc_state(child));

	ASSERT_EQ(0, close(self->fd));
	self->fd = -1;
	EXPECT_FALSE(stopped(nsinit)) TH_LOG("namespace init still '%c'", proc_state(nsinit));
	EXPECT_FALSE(stopped(child)) TH_LOG("its child still '%c'", proc_state(child));
}

/* A task that userspace continues on purpose during the freeze keeps running. */
TEST_F(freeze, sigconted_helper_runs)
{
	pid_t helper, other;

	helper = spawn(run_pause, NULL);
	other = spawn(run_pause, NULL);
	ASSERT_GT(helper, 0);
	ASSERT_GT(other, 0);
	self->fd = sys_freeze_processes(0);
	ASSERT_GE(self->fd, 0);
	ASSERT_EQ('T', proc_state(helper));
	ASSERT_EQ(0, kill(helper, SIGCONT));
	EXPECT_FALSE(stopped(helper));
	EXPECT_EQ('T', proc_state(other));
}

struct owner_args {
	int go[2];
	int ready[2];
};

static void run_owner(void *arg)
{
	struct owner_args *a = arg;
	char c;
	int fd;

	/* Wait for the test process to attach: it is exempt as our tracer. */
	if (read(a->go[0], &c, 1) != 1)
		_exit(1);
	fd = sys_freeze_processes(0);
	if (write(a->ready[1], fd >= 0 ? "f" : "e", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

/* The owner dying (SIGKILL) ends the freeze: everything runs again. */
TEST_F(freeze, owner_killed_releases)
{
	struct owner_args a;
	pid_t owner, victim;
	int status;
	char c;

	ASSERT_EQ(0, pipe(a.go));
	ASSERT_EQ(0, pipe(a.ready));
	victim = spawn(run_busy, NULL);
	ASSERT_GT(victim, 0);
	owner = spawn(run_owner, &a);
	ASSERT_GT(owner, 0);
	ASSERT_EQ(0, ptrace(PTRACE_SEIZE, owner, 0, 0));
	ASSERT_EQ(1, write(a.go[1], "g", 1));

	ASSERT_EQ(1, read(a.ready[0], &c, 1));
	ASSERT_EQ('f', c);
	EXPECT_EQ('T', proc_state(victim));
	EXPECT_FALSE(stopped(getpid()));

	ASSERT_EQ(0, kill(owner, SIGKILL));
	/* Reap it: its files, the freeze among them, are released at exit. */
	while (waitpid(owner, &status, __WALL) == owner && !WIFSIGNALED(status))
		;
	EXPECT_FALSE(stopped(victim)) TH_LOG("victim is '%c'", proc_state(victim));
	/* And the freeze is free again. */
	self->fd = sys_freeze_processes(0);
	EXPECT_GE(self->fd, 0);
}

static void run_unprivileged(void *arg)
{
	int *res = arg;
	int fd;

	if (setresuid(65534, 65534, 65534))
		_exit(2);
	fd = sys_freeze_processes(0);
	_exit(fd < 0 && errno == EPERM ? 0 : 1);
	(void)res;
}

/* Without CAP_SYS_ADMIN: EPERM, and nothing stopped. */
TEST_F(freeze, eperm_without_cap_sys_admin)
{
	pid_t pid, other;
	int status;

	other = spawn(run_pause, NULL);
	ASSERT_GT(other, 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		run_unprivileged(NULL);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("unprivileged freeze did not fail with EPERM");
	EXPECT_FALSE(stopped(other));
}

/* Unknown flags: EINVAL, and nothing stopped. */
TEST_F(freeze, einval_on_unknown_flags)
{
	pid_t other = spawn(run_pause, NULL);

	ASSERT_GT(other, 0);
	EXPECT_EQ(-1, sys_freeze_processes(1));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, sys_freeze_processes(0x80000000u));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_FALSE(stopped(other));
}

/* A second freeze while one is held: EBUSY; after release it works again. */
TEST_F(freeze, ebusy_on_second_freeze)
{
	pid_t other = spawn(run_pause, NULL);
	int fd2;

	ASSERT_GT(other, 0);
	self->fd = sys_freeze_processes(0);
	ASSERT_GE(self->fd, 0);
	EXPECT_EQ(-1, sys_freeze_processes(0));
	EXPECT_EQ(EBUSY, errno);
	/* The failed call left the held freeze as it was. */
	EXPECT_EQ('T', proc_state(other));
	ASSERT_EQ(0, close(self->fd));
	self->fd = -1;
	fd2 = sys_freeze_processes(0);
	EXPECT_GE(fd2, 0);
	close(fd2);
}

static void run_vfork_parent(void *arg)
{
	(void)arg;
	/* Its own process group, so that the teardown kills the child too. */
	setpgid(0, 0);
	if (vfork() == 0)
		pause_forever();
	_exit(0);
}

static int freeze_status(int fd, struct hibsnap_freeze_status *st)
{
	memset(st, 0xff, sizeof(*st));
	return ioctl(fd, HIBSNAP_IOC_FREEZE_STATUS, st);
}

/* Waits up to 10 s for @pid to be in state @state. */
static bool reaches_state(pid_t pid, char state)
{
	double deadline = now_s() + 10;

	while (proc_state(pid) != state && now_s() < deadline)
		usleep(1000);
	return proc_state(pid) == state;
}

/* Reads a block of the suspended device: asleep in D until it is resumed. */
static void run_device_reader(void *arg)
{
	void *buf = aligned_alloc(4096, 4096);
	int fd = open(SLEEP_DEV, O_RDONLY | O_DIRECT | O_CLOEXEC);

	(void)arg;
	_exit(fd >= 0 && buf && pread(fd, buf, 4096, 0) == 4096 ? 0 : 1);
}

/* Writes a block of the suspended device and syncs it: asleep in D until it is resumed. */
static void run_device_syncer(void *arg)
{
	char buf[4096];
	int fd = open(SLEEP_DEV, O_WRONLY | O_CLOEXEC);

	(void)arg;
	memset(buf, 0x5a, sizeof(buf));
	_exit(fd >= 0 && pwrite(fd, buf, sizeof(buf), 4096) == sizeof(buf) && !fsync(fd) ? 0 : 1);
}

/*
 * Tasks asleep in the kernel in sleeps that never end by themselves do not
 * fail the freeze: a vfork parent whose child the freeze stops (a killable
 * wait), a reader and a syncer of a suspended device-mapper device
 * (uninterruptible). The freeze returns with them asleep and counted as
 * such; once the device resumes they stop on their way back to user space
 * and are counted as stopped; after the release they finish their I/O.
 */
TEST_F_TIMEOUT(freeze, sleepers_do_not_fail_the_freeze, 120)
{
	struct hibsnap_freeze_status st, st2;
	pid_t parent, vchild, reader, syncer;
	int status;
	double t0;

	ASSERT_EQ(0, run(NULL, 0, "dmsetup create " SLEEP_NAME
			 " --table '0 8192 linear /dev/ram3 0' && dmsetup mknodes " SLEEP_NAME));
	parent = spawn(run_vfork_parent, NULL);
	ASSERT_GT(parent, 0);
	while ((vchild = find_child(parent)) < 0)
		usleep(1000);
	ASSERT_EQ(0, run(NULL, 0, "dmsetup suspend " SLEEP_NAME));
	reader = spawn(run_device_reader, NULL);
	syncer = spawn(run_device_syncer, NULL);
	ASSERT_GT(reader, 0);
	ASSERT_GT(syncer, 0);
	ASSERT_TRUE(reaches_state(reader, 'D'));
	ASSERT_TRUE(reaches_state(syncer, 'D'));

	t0 = now_s();
	self->fd = sys_freeze_processes(0);
	ASSERT_LE(0, self->fd) TH_LOG("freeze failed after %.1f s: %s", now_s() - t0,
				      strerror(errno));
	TH_LOG("freeze took %.2f s with three tasks asleep", now_s() - t0);
	EXPECT_EQ('D', proc_state(parent));
	EXPECT_EQ('D', proc_state(reader));
	EXPECT_EQ('D', proc_state(syncer));
	EXPECT_EQ('T', proc_state(vchild));
	ASSERT_EQ(0, freeze_status(self->fd, &st));
	TH_LOG("held %u groups: %u threads stopped, %u asleep, %u running", st.groups, st.stopped,
	       st.asleep, st.running);
	EXPECT_LE(3U, st.asleep);
	EXPECT_EQ(0U, st.running);

	/* The device resumes: the reader and the syncer wake, and stop. */
	ASSERT_EQ(0, run(NULL, 0, "dmsetup resume " SLEEP_NAME));
	EXPECT_TRUE(reaches_state(reader, 'T'));
	EXPECT_TRUE(reaches_state(syncer, 'T'));
	ASSERT_EQ(0, freeze_status(self->fd, &st2));
	EXPECT_EQ(st.asleep - 2, st2.asleep);
	EXPECT_EQ(st.stopped + 2, st2.stopped);
	EXPECT_EQ('D', proc_state(parent));

	/* Released: they run on and their I/O succeeded. */
	close(self->fd);
	self->fd = -1;
	EXPECT_EQ(reader, waitpid(reader, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	EXPECT_EQ(syncer, waitpid(syncer, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	EXPECT_FALSE(stopped(vchild));
	kill(-parent, SIGKILL);
	EXPECT_EQ(0, run(NULL, 0, "dmsetup remove " SLEEP_NAME));
}

/*
 * A thread group that cannot be made quiet (here by the stubborn_tgid test
 * knob; in life a task running in the kernel for the whole timeout, or one
 * an exempt task keeps continuing): the freeze times out, names it, and
 * undoes itself.
 */
TEST_F_TIMEOUT(freeze, timeout_names_stubborn_task, 120)
{
	char line[1024], needle[64], num[16];
	pid_t stubborn, other;
	int kmsg, fd, err, found = 0;
	double t0;
	ssize_t n;

	if (access(STUBBORN_TGID, W_OK))
		SKIP(return, "no %s (CONFIG_DEBUG_FS?)", STUBBORN_TGID);
	stubborn = spawn(run_sleeper, NULL);
	other = spawn(run_busy, NULL);
	ASSERT_GT(stubborn, 0);
	ASSERT_GT(other, 0);
	kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	ASSERT_GE(kmsg, 0);
	lseek(kmsg, 0, SEEK_END);
	snprintf(num, sizeof(num), "%d", stubborn);
	ASSERT_EQ(0, write_str(STUBBORN_TGID, num));
	t0 = now_s();
	fd = sys_freeze_processes(0);
	err = errno;
	ASSERT_EQ(0, write_str(STUBBORN_TGID, "0"));
	TH_LOG("freeze failed after %.1f s", now_s() - t0);
	EXPECT_EQ(-1, fd);
	EXPECT_EQ(ETIMEDOUT, err);
	if (fd >= 0)
		close(fd);
	snprintf(needle, sizeof(needle), ":%d (thread group %d) did not stop", stubborn, stubborn);
	while ((n = read(kmsg, line, sizeof(line) - 1)) > 0) {
		line[n] = 0;
		if (strstr(line, needle))
			found = 1;
	}
	close(kmsg);
	EXPECT_TRUE(found) TH_LOG("no \"%s\" in the kernel log", needle);
	EXPECT_FALSE(stopped(stubborn));
	EXPECT_FALSE(stopped(other));
}

/* 100 freeze/release cycles leak no fd and no memory. */
TEST_F_TIMEOUT(freeze, cycles_leak_nothing, 300)
{
	long slab0, slab1;
	int fds0, i;

	ASSERT_GT(spawn(run_pause, NULL), 0);
	ASSERT_GT(spawn(run_busy, NULL), 0);
	/* One cycle first, so that one-time allocations are not counted. */
	self->fd = sys_freeze_processes(0);
	ASSERT_GE(self->fd, 0);
	close(self->fd);
	self->fd = -1;

	fds0 = count_fds();
	slab0 = meminfo_kb("Slab");
	for (i = 0; i < 100; i++) {
		int fd = sys_freeze_processes(0);

		ASSERT_GE(fd, 0) TH_LOG("cycle %d: %s", i, strerror(errno));
		ASSERT_EQ('T', proc_state(children[0]));
		ASSERT_EQ(0, close(fd));
		ASSERT_FALSE(stopped(children[0]));
	}
	slab1 = meminfo_kb("Slab");
	TH_LOG("100 cycles: fds %d -> %d, Slab %ld -> %ld kB", fds0, count_fds(), slab0, slab1);
	EXPECT_EQ(fds0, count_fds());
	EXPECT_LT(slab1 - slab0, 1024);
}

/* 1,000 processes frozen and released; the time is printed, not asserted. */
TEST_F_TIMEOUT(freeze, thousand_processes, 300)
{
	double t0, t1;
	int i, n = 1000;

	for (i = 0; i < n; i++)
		ASSERT_GT(spawn(run_pause, NULL), 0);
	t0 = now_s();
	self->fd = sys_freeze_processes(0);
	t1 = now_s();
	ASSERT_GE(self->fd, 0);
	for (i = 0; i < n; i++)
		ASSERT_EQ('T', proc_state(children[i]));
	TH_LOG("froze %d processes in %.3f s", n, t1 - t0);
	t0 = now_s();
	ASSERT_EQ(0, close(self->fd));
	t1 = now_s();
	self->fd = -1;
	for (i = 0; i < n; i++)
		ASSERT_FALSE(stopped(children[i]));
	TH_LOG("released %d processes in %.3f s", n, t1 - t0);
}

TEST_HARNESS_MAIN
