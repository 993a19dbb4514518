// SPDX-License-Identifier: GPL-2.0
/*
 * freeze_processes(2) side by side with the kernel's freezer
 * (/dev/snapshot SNAPSHOT_FREEZE and SNAPSHOT_UNFREEZE) on one task set in
 * one boot: N processes, half spinning in user mode, half asleep in pause().
 *
 * The times are printed, not asserted (under TCG only their ratio means
 * anything), on lines starting "# HIBSNAP-BENCH" that the harness collects.
 * Each is timed twice: with the test SCHED_FIFO, the mechanism's own time,
 * and with the test SCHED_OTHER, as an admin's tool runs, where the time
 * includes the test's own wait for a CPU among thousands of busy tasks.
 * What is asserted is the outcome of every round: after freeze_processes(2)
 * every process is in T, after close() none is, and both freezers return 0.
 * The test itself does as little as it can while the processes spin: every
 * bit of CPU time it spends then costs it a wait for thousands of them.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/futex.h>
#include <linux/hibsnap.h>
#include <linux/suspend_ioctls.h>

#include "../kselftest_harness.h"
#include "hibsnap_util.h"

#define MAX_PROCS 4000
#define ROUNDS 3

static pid_t procs[MAX_PROCS];
static int nr_procs;

FIXTURE(bench)
{
	int fd;
	int snapshot;
};

FIXTURE_VARIANT(bench)
{
	int n;
	int fifo;
};

FIXTURE_VARIANT_ADD(bench, n1000_fifo)
{
	.n = 1000,
	.fifo = 1,
};

FIXTURE_VARIANT_ADD(bench, n4000_fifo)
{
	.n = 4000,
	.fifo = 1,
};

FIXTURE_VARIANT_ADD(bench, n1000)
{
	.n = 1000,
};

FIXTURE_VARIANT_ADD(bench, n4000)
{
	.n = 4000,
};

/* What the processes share with the test: a start signal and a count. */
struct start {
	int go;
	int started;
};

#define STACK_SIZE (16 * 1024)

static struct start *start;
static char *stacks;

/* Waits for @start->go, counts itself, then spins (even @arg) or sleeps. */
static int proc_main(void *arg)
{
	/* Killed with the test, whatever happens to it. */
	syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
	while (!__atomic_load_n(&start->go, __ATOMIC_ACQUIRE))
		syscall(SYS_futex, &start->go, FUTEX_WAIT, 0, NULL, NULL, 0);
	__atomic_add_fetch(&start->started, 1, __ATOMIC_SEQ_CST);
	if ((long)arg % 2)
		for (;;)
			syscall(SYS_pause);
	for (;;)
		__asm__ __volatile__("" ::: "memory");
	return 0;
}

/*
 * Half the processes spin, half sleep. Each is a process of its own (its own
 * thread group) sharing the test's memory (CLONE_VM), which makes thousands
 * of them cheap to create: the freeze and the freezer work per task, not per
 * address space. All wait in FUTEX_WAIT (interruptible) until every one
 * exists, then start together.
 */
static void spawn_all(struct __test_metadata *_metadata, int n)
{
	long i;

	start = mmap(NULL, sizeof(*start), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, start);
	stacks = mmap(NULL, (size_t)n * STACK_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, stacks);
	for (i = 0; i < n; i++) {
		pid_t pid = clone(proc_main, stacks + (i + 1) * STACK_SIZE,
				  CLONE_VM | SIGCHLD, (void *)i);

		ASSERT_GT(pid, 0) TH_LOG("clone %ld: %s", i, strerror(errno));
		procs[nr_procs++] = pid;
		/* One process group, killed with one kill(). */
		ASSERT_EQ(0, setpgid(pid, procs[0]));
	}
	__atomic_store_n(&start->go, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &start->go, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	for (i = 0; __atomic_load_n(&start->started, __ATOMIC_SEQ_CST) < n; i++) {
		ASSERT_LT(i, 60000) TH_LOG("%d of %d started", start->started, n);
		usleep(10000);
	}
}

static int count_state(char want)
{
	int i, n = 0;

	for (i = 0; i < nr_procs; i++)
		n += proc_state(procs[i]) == want;
	return n;
}

FIXTURE_SETUP(bench)
{
	self->fd = -1;
	self->snapshot = -1;
	nr_procs = 0;
	ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
	spawn_all(_metadata, variant->n);
}

FIXTURE_TEARDOWN(bench)
{
	if (self->fd >= 0)
		close(self->fd);
	if (self->snapshot >= 0)
		close(self->snapshot);
	if (nr_procs)
		kill(-procs[0], SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	if (stacks && stacks != MAP_FAILED)
		munmap(stacks, (size_t)variant->n * STACK_SIZE);
	if (start && start != MAP_FAILED)
		munmap(start, sizeof(*start));
	stacks = NULL;
	start = NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v)
{
	qsort(v, ROUNDS, sizeof(*v), cmp_double);
	return v[ROUNDS / 2];
}

TEST_F_TIMEOUT(bench, freeze_and_release_beside_kernel_freezer, 600)
{
	double hs_freeze[ROUNDS], hs_release[ROUNDS], k_freeze[ROUNDS], k_thaw[ROUNDS];
	struct sched_param fifo = { .sched_priority = 1 };
	double t0, hf, hr, kf, kt;
	int r;

	/* The processes, created before, stay SCHED_OTHER. */
	if (variant->fifo)
		ASSERT_EQ(0, sched_setscheduler(0, SCHED_FIFO, &fifo))
			TH_LOG("SCHED_FIFO: %s", strerror(errno));
	for (r = 0; r < ROUNDS; r++) {
		sync();
		t0 = now_s();
		self->fd = sys_freeze_processes(0);
		hs_freeze[r] = now_s() - t0;
		ASSERT_GE(self->fd, 0) TH_LOG("freeze_processes: %s", strerror(errno));
		ASSERT_EQ(nr_procs, count_state('T'));
		t0 = now_s();
		ASSERT_EQ(0, close(self->fd));
		hs_release[r] = now_s() - t0;
		self->fd = -1;

		self->snapshot = open("/dev/snapshot", O_RDONLY | O_CLOEXEC);
		ASSERT_GE(self->snapshot, 0) TH_LOG("/dev/snapshot: %s", strerror(errno));
		sync();
		t0 = now_s();
		ASSERT_EQ(0, ioctl(self->snapshot, SNAPSHOT_FREEZE))
			TH_LOG("SNAPSHOT_FREEZE: %s", strerror(errno));
		k_freeze[r] = now_s() - t0;
		/*
		 * Checked here, with every process frozen (D): reading 4,000
		 * /proc files while thousands spin would take minutes. A
		 * process the release failed to continue is still in T: the
		 * freezer leaves stopped tasks as they are.
		 */
		ASSERT_EQ(0, count_state('T'));
		t0 = now_s();
		ASSERT_EQ(0, ioctl(self->snapshot, SNAPSHOT_UNFREEZE));
		k_thaw[r] = now_s() - t0;
		close(self->snapshot);
		self->snapshot = -1;
		TH_LOG("round %d: freeze_processes %.3f s, close %.3f s; "
		       "SNAPSHOT_FREEZE %.3f s, UNFREEZE %.3f s",
		       r, hs_freeze[r], hs_release[r], k_freeze[r], k_thaw[r]);
	}
	hf = median(hs_freeze);
	hr = median(hs_release);
	kf = median(k_freeze);
	kt = median(k_thaw);
	/* One line, for the harness. */
	printf("# HIBSNAP-BENCH freeze n=%d (half spinning): ", variant->n);
	printf("freeze_processes %.3f s vs kernel freezer %.3f s (%.2fx); ", hf, kf, hf / kf);
	printf("release %.3f s vs thaw %.3f s (%.2fx); medians of %d, caller %s\n",
	       hr, kt, hr / kt, ROUNDS, variant->fifo ? "SCHED_FIFO" : "SCHED_OTHER");
	fflush(stdout);
}

TEST_HARNESS_MAIN
