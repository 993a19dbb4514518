// SPDX-License-Identifier: GPL-2.0
/*
 * snapshot_kernel(2) against the rest of the system in tight loops, for the
 * races only a debug kernel sees at once: a use-after-free (KASAN), a list
 * corrupted (DEBUG_LIST), a WARN. The harness fails a boot whose kernel log
 * has any such report; each test here checks the calls' results and that
 * its loops overlapped the calls as often as it says. The test command runs
 * them on the test kernel (DEBUG_LIST); "harness/hibsnap kasan" runs them
 * on a KASAN build of it.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/dm-ioctl.h>
#include <linux/hibsnap.h>

#include "../kselftest_harness.h"
#include "hibsnap_util.h"
#include "hibsnap_image.h"

#define FAIL_SYNC "/sys/kernel/debug/hibsnap/fail_sync/"
#define FILE_PAGES 16
#define NR_CALLS 12

/* Counters the children bump in memory they share with the test. */
struct laps {
	unsigned long files, memfds;
	int stop;
};

/* Writes @len bytes of @byte to @fd at 0; 0 or -1. */
static int fill_fd(int fd, int byte, size_t len)
{
	char buf[PAGE];

	memset(buf, byte, sizeof(buf));
	for (size_t off = 0; off < len; off += PAGE)
		if (pwrite(fd, buf, PAGE, off) != (ssize_t)PAGE)
			return -1;
	return 0;
}

/*
 * Files on ext4 that come and go: written, synced, read back (their page
 * cache clean and up to date, the kind the count looks into), truncated
 * or unlinked (the inode evicted). Exits on an error.
 */
static void files_loop(struct laps *l)
{
	char buf[PAGE];

	while (!__atomic_load_n(&l->stop, __ATOMIC_RELAXED)) {
		int fd = open("/mnt/race", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		if (fd < 0 || fill_fd(fd, 0x33, FILE_PAGES * PAGE) || fsync(fd))
			_exit(1);
		for (int i = 0; i < FILE_PAGES; i++)
			if (pread(fd, buf, PAGE, i * PAGE) != (ssize_t)PAGE)
				_exit(1);
		if ((l->files & 1) && ftruncate(fd, 0))
			_exit(1);
		close(fd);
		if (unlink("/mnt/race"))
			_exit(1);
		__atomic_add_fetch(&l->files, 1, __ATOMIC_RELAXED);
	}
	_exit(0);
}

/* memfds that come and go: shared memory freed with its inode. */
static void memfds_loop(struct laps *l)
{
	while (!__atomic_load_n(&l->stop, __ATOMIC_RELAXED)) {
		int fd = memfd_create("hsrace", MFD_CLOEXEC);

		if (fd < 0 || fill_fd(fd, 0x44, FILE_PAGES * PAGE))
			_exit(1);
		close(fd);
		__atomic_add_fetch(&l->memfds, 1, __ATOMIC_RELAXED);
	}
	_exit(0);
}

static pid_t start(void (*loop)(struct laps *), struct laps *l)
{
	pid_t pid = fork();

	if (pid == 0)
		loop(l);
	return pid;
}

/* Whether @pid exited with status 0. */
static int ended_well(pid_t pid)
{
	int status;

	return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status);
}

FIXTURE(race) {
	int mounted;
};

FIXTURE_SETUP(race)
{
	self->mounted = !mount_fresh_ext4();
	ASSERT_TRUE(self->mounted);
}

FIXTURE_TEARDOWN(race)
{
	write_str(FAIL_SYNC "probability", "0");
	if (self->mounted)
		umount("/mnt");
}

/*
 * The reserve counts the pages to copy while the system runs (step 1),
 * looking into folios that others may free, truncate or evict meanwhile:
 * two helpers, continued after the freeze, create, fill, read, truncate and
 * remove ext4 files and memfds throughout. Each call fails at the step after
 * the count (fail_sync, EIO), so the loop makes many counts cheaply; each
 * count overlaps both helpers' laps.
 */
TEST_F_TIMEOUT(race, count_while_files_come_and_go, 300)
{
	struct laps *l = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			      -1, 0);
	unsigned long overlapped = 0;
	pid_t files, memfds;
	int frz, fd, i;

	ASSERT_NE(MAP_FAILED, l);
	ASSERT_EQ(0, access(FAIL_SYNC "probability", W_OK))
		TH_LOG("no hibsnap fault injection (CONFIG_FAULT_INJECTION_DEBUG_FS?)");
	files = start(files_loop, l);
	memfds = start(memfds_loop, l);
	ASSERT_LT(0, files);
	ASSERT_LT(0, memfds);
	while (!__atomic_load_n(&l->files, __ATOMIC_RELAXED) ||
	       !__atomic_load_n(&l->memfds, __ATOMIC_RELAXED))
		usleep(1000);

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	ASSERT_EQ('T', proc_state(files));
	kill(files, SIGCONT);
	kill(memfds, SIGCONT);
	for (i = 0; i < NR_CALLS; i++) {
		unsigned long f0 = __atomic_load_n(&l->files, __ATOMIC_RELAXED);
		unsigned long m0 = __atomic_load_n(&l->memfds, __ATOMIC_RELAXED);

		ASSERT_EQ(0, write_str(FAIL_SYNC "verbose", "1"));
		ASSERT_EQ(0, write_str(FAIL_SYNC "interval", "1"));
		ASSERT_EQ(0, write_str(FAIL_SYNC "times", "1"));
		ASSERT_EQ(0, write_str(FAIL_SYNC "probability", "100"));
		errno = 0;
		fd = sys_snapshot_kernel(0, 0);
		EXPECT_EQ(-1, fd) TH_LOG("call %d did not fail at the sync", i);
		EXPECT_EQ(EIO, errno) TH_LOG("call %d: %s", i, strerror(errno));
		if (fd >= 0)
			close(fd);
		overlapped += __atomic_load_n(&l->files, __ATOMIC_RELAXED) > f0 &&
			      __atomic_load_n(&l->memfds, __ATOMIC_RELAXED) > m0;
	}
	close(frz);
	__atomic_store_n(&l->stop, 1, __ATOMIC_RELAXED);
	EXPECT_TRUE(ended_well(files)) TH_LOG("the ext4 helper failed");
	EXPECT_TRUE(ended_well(memfds)) TH_LOG("the memfd helper failed");
	TH_LOG("%d calls, %lu overlapped by both helpers; %lu files, %lu memfds made and removed",
	       NR_CALLS, overlapped, l->files, l->memfds);
	EXPECT_LE(NR_CALLS / 2, (int)overlapped) TH_LOG("the helpers did not run during the calls");
	munmap(l, PAGE);
}

/*
 * Whether the dm-hibsnap device @name is in snapshot mode (its status line,
 * as "dmsetup status" shows it, begins with the mode): 1, 0, or -1.
 */
static int dm_snapshotting(int ctl, const char *name)
{
	struct {
		struct dm_ioctl io;
		char data[1024];
	} req;
	struct dm_target_spec *spec;

	memset(&req, 0, sizeof(req));
	req.io.version[0] = DM_VERSION_MAJOR;
	req.io.data_size = sizeof(req);
	req.io.data_start = sizeof(req.io);
	snprintf(req.io.name, sizeof(req.io.name), "%s", name);
	if (ioctl(ctl, DM_TABLE_STATUS, &req) || req.io.target_count != 1)
		return -1;
	spec = (struct dm_target_spec *)((char *)&req + req.io.data_start);
	return !strncmp((char *)(spec + 1), "snapshot", 8);
}

/*
 * A thread of the caller that watches the boot dm-hibsnap device and, each
 * time it goes into snapshot mode (at the atomic point), writes every page of
 * a shared mapping once: right after the atomic point, while the call goes
 * on to fill the reserve. Nothing writes the mapping between the
 * protection and the atomic point, so its pages are kept in place and each
 * write of the burst copies one first, from the reserve.
 */
struct rewriter {
	unsigned char *m;
	size_t len;
	unsigned long bursts;
	int stop, error;
};

static void *rewrite(void *arg)
{
	struct rewriter *w = arg;
	int ctl = open("/dev/mapper/control", O_RDWR | O_CLOEXEC), was = 0, now;

	if (ctl < 0) {
		w->error = errno;
		return NULL;
	}
	while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED)) {
		now = dm_snapshotting(ctl, "hsboot");
		if (now < 0) {
			w->error = errno ? errno : EINVAL;
			break;
		}
		if (now && !was) {
			for (size_t off = 0; off < w->len; off += PAGE)
				w->m[off]++;
			__atomic_add_fetch(&w->bursts, 1, __ATOMIC_RELAXED);
		}
		was = now;
	}
	close(ctl);
	return NULL;
}

/* Long enough a burst to still be writing when the call fills the reserve. */
#define SHARED_LEN (64UL << 20)
#define OVERHEAD_PAGES 8192

/*
 * Copies before writes while the image's overhead reserve is filled: right
 * after each atomic point a thread of the caller writes 64 MiB of a memfd
 * kept in place (see rewrite()), taking copies from the reserve while the
 * call fills it with up to 8,192 pages the atomic copy did not use
 * (swsusp_live_release_unused()). Each image is read to its end and saw
 * copies before writes; the thread wrote once a call.
 */
TEST_F_TIMEOUT(race, copies_before_writes_while_the_reserve_is_filled, 300)
{
	struct rewriter w = { .len = SHARED_LEN };
	unsigned long with_copies = 0;
	struct hibsnap_geometry g;
	pthread_t thread;
	int mfd, frz, fd, i;

	mfd = memfd_create("hsrace", MFD_CLOEXEC);
	ASSERT_LE(0, mfd);
	ASSERT_EQ(0, ftruncate(mfd, SHARED_LEN));
	w.m = mmap(NULL, SHARED_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	ASSERT_NE(MAP_FAILED, w.m);
	memset(w.m, 0x55, SHARED_LEN);
	ASSERT_EQ(0, pthread_create(&thread, NULL, rewrite, &w));

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	for (i = 0; i < NR_CALLS / 2; i++) {
		fd = sys_snapshot_kernel(OVERHEAD_PAGES, 0);
		EXPECT_LE(0, fd) TH_LOG("call %d: %s", i, strerror(errno));
		if (fd < 0)
			continue;
		EXPECT_LT(0, drain(fd, NULL)) TH_LOG("call %d: image not read", i);
		ASSERT_EQ(0, geometry(fd, &g));
		EXPECT_EQ(0U, g.flags) TH_LOG("call %d: image dropped", i);
		with_copies += g.cbw_pages > 0;
		close(fd);
	}
	close(frz);
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELAXED);
	ASSERT_EQ(0, pthread_join(thread, NULL));
	TH_LOG("%d calls, %lu with copies before writes; %lu bursts of writes",
	       NR_CALLS / 2, with_copies, w.bursts);
	EXPECT_EQ(0, w.error) TH_LOG("the thread: %s", strerror(w.error));
	EXPECT_EQ(NR_CALLS / 2, (int)w.bursts) TH_LOG("not one burst a call");
	EXPECT_EQ(NR_CALLS / 2, (int)with_copies) TH_LOG("a call saw no copy before a write");
	munmap(w.m, SHARED_LEN);
	close(mfd);
}

TEST_HARNESS_MAIN
