// SPDX-License-Identifier: GPL-2.0
/*
 * Tests of snapshot_kernel(2) and its image file descriptor: errors, the
 * stream's format and geometry, the contents of pages at their PFNs, the
 * half-of-RAM case against mainline /dev/snapshot, aborts, and an injected
 * failure at each step of the pipeline. See Documentation/power/hibsnap.rst.
 *
 * PFNs come from /proc/PID/pagemap (the tests run as root); the stream is
 * parsed as the kernel's loader parses it: a header page (struct
 * swsusp_info), the PFN list (bit 63: an all-zero page without data), then
 * one data page per other PFN, in order.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/hibsnap.h>
#include <linux/suspend_ioctls.h>

#include "../kselftest_harness.h"
#include "hibsnap_util.h"
#include "hibsnap_image.h"

#define FAIL_HIBSNAP "/sys/kernel/debug/hibsnap"
#define FAIL_FUNCTION "/sys/kernel/debug/fail_function"
/* Pages the content test frees just before the call. */
#define NR_FREED 1024

/*
 * Free memory in kB: MemFree plus the pages on the per-CPU free lists, which
 * MemFree leaves out and which grow after a large batch of frees.
 */
static long free_kb(void)
{
	char line[256];
	long pcp = 0;
	FILE *f = fopen("/proc/zoneinfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *c = strstr(line, "count:");

		if (c)
			pcp += strtol(c + 6, NULL, 10);
	}
	fclose(f);
	return meminfo_kb("MemFree") + pcp * (PAGE / 1024);
}

/* How many of the @n PFNs in @pfns the stream lists, as data or zero pages. */
static unsigned long listed(const struct stream *s, const unsigned long *pfns, int n)
{
	unsigned long count = 0;

	for (int i = 0; i < n; i++)
		for (unsigned long j = 0; j < s->nr_pfns; j++)
			if ((s->pfns[j] & ~PFN_ZERO) == pfns[i]) {
				count++;
				break;
			}
	return count;
}

/* A child that sits in pause(); the freeze stops it. */
static pid_t sleeper(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		for (;;)
			pause();
	}
	return pid;
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* Only for TEST_F_TIMEOUT(): the long tests need more than the default 30 s. */
FIXTURE(slow) {
	int unused;
};

FIXTURE_SETUP(slow) {}
FIXTURE_TEARDOWN(slow)
{
	/* A failed test may leave ext4 on /dev/ram2 mounted; the swap test needs the disk. */
	umount2("/mnt2", MNT_DETACH);
}

TEST(needs_the_freeze)
{
	errno = 0;
	EXPECT_EQ(-1, sys_snapshot_kernel(0, 0));
	EXPECT_EQ(ENOLCK, errno);
}

TEST(bad_flags_are_einval)
{
	int frz = sys_freeze_processes(0);

	ASSERT_LE(0, frz);
	errno = 0;
	EXPECT_EQ(-1, sys_snapshot_kernel(0, 2));
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	EXPECT_EQ(-1, sys_snapshot_kernel(0, 1U << 31));
	EXPECT_EQ(EINVAL, errno);
	close(frz);
}

TEST(unprivileged_is_eperm)
{
	int status;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (setuid(65534))
			_exit(10);
		_exit(sys_snapshot_kernel(0, 0) == -1 && errno == EPERM ? 0 : 11);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* An overhead that cannot fit: ENOMEM at once, and the numbers in the log. */
TEST(overhead_too_large_is_enomem)
{
	long free0 = free_kb();
	int frz = sys_freeze_processes(0), fd;

	ASSERT_LE(0, frz);
	errno = 0;
	EXPECT_EQ(-1, sys_snapshot_kernel(1UL << 40, 0));
	EXPECT_EQ(ENOMEM, errno);
	EXPECT_TRUE(kmsg_has("hibsnap: cannot reserve"));
	/* Nothing left behind: the next snapshot works. */
	fd = sys_snapshot_kernel(0, 0);
	EXPECT_LE(0, fd);
	if (fd >= 0)
		close(fd);
	close(frz);
	EXPECT_LT(free0 - 4096, free_kb()) TH_LOG("free %ld -> %ld kB", free0, free_kb());
}

/* The descriptor: close-on-exec, a stream, always readable, one image at a time. */
TEST(image_fd_properties)
{
	int frz, fd, dup_fd, flags;
	struct pollfd pfd;
	char c;

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	fd = sys_snapshot_kernel(0, 0);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
	flags = fcntl(fd, F_GETFD);
	EXPECT_TRUE(flags & FD_CLOEXEC);
	errno = 0;
	EXPECT_EQ(-1, lseek(fd, 0, SEEK_SET));
	EXPECT_EQ(ESPIPE, errno);
	errno = 0;
	EXPECT_EQ(-1, pread(fd, &c, 1, 0));
	EXPECT_EQ(ESPIPE, errno);
	errno = 0;
	EXPECT_EQ(-1, write(fd, &c, 1));
	EXPECT_EQ(EBADF, errno);
	errno = 0;
	EXPECT_EQ(-1, ioctl(fd, _IO(0xB9, 0x7f)));
	EXPECT_EQ(ENOTTY, errno);
	pfd.fd = fd;
	pfd.events = POLLIN;
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_TRUE(pfd.revents & POLLIN);
	/* A second image, or /dev/snapshot, while this one is open. */
	errno = 0;
	EXPECT_EQ(-1, sys_snapshot_kernel(0, 0));
	EXPECT_EQ(EBUSY, errno);
	errno = 0;
	EXPECT_EQ(-1, open("/dev/snapshot", O_RDONLY | O_CLOEXEC));
	EXPECT_EQ(EBUSY, errno);
	/* A duplicate keeps the image; the last close releases it. */
	dup_fd = dup(fd);
	ASSERT_LE(0, dup_fd);
	close(fd);
	EXPECT_EQ(1, read(dup_fd, &c, 1));
	/* The image does not need the freeze: it reads on once it is released. */
	close(frz);
	EXPECT_EQ(1, read(dup_fd, &c, 1));
	close(dup_fd);
	errno = 0;
	EXPECT_EQ(-1, read(dup_fd, &c, 1));
	EXPECT_EQ(EBADF, errno);
	/* Released: /dev/snapshot can be opened again. */
	fd = open("/dev/snapshot", O_RDONLY | O_CLOEXEC);
	EXPECT_LE(0, fd);
	if (fd >= 0)
		close(fd);
}

/*
 * A stopped child's anon pages (one with a pattern, one all zeros), a clean
 * page-cache page of a file on ext4 that only the child maps, and a page
 * the caller overwrites right after the call: each is in the stream at its
 * PFN with what it held at the atomic point. The header and the geometry
 * add up to the bytes read, zero pages have no data, and no more pages are
 * listed than were in use.
 */
TEST_F_TIMEOUT(slow, image_contents_and_geometry, 300)
{
	struct target *t = calloc(4, sizeof(*t));
	int pipefd[2], frz, fd, ffd;
	unsigned char *mine;
	struct hibsnap_geometry g;
	struct stream s = { .t = t, .nr_t = 4 };
	unsigned long pfns[3];
	unsigned long *freed = calloc(NR_FREED, sizeof(long));
	unsigned char *junk;
	pid_t child;

	ASSERT_NE(NULL, t);
	ASSERT_EQ(0, mount_fresh_ext4());
	ffd = open("/mnt/file", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_LE(0, ffd);
	pattern(t[2].expect, PAGE, 3, 0);
	ASSERT_EQ((ssize_t)PAGE, pwrite(ffd, t[2].expect, PAGE, 0));
	ASSERT_EQ(0, fsync(ffd));

	ASSERT_EQ(0, pipe(pipefd));
	child = fork();
	ASSERT_LE(0, child);
	if (child == 0) {
		unsigned char *a = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		/* Mapped from a read-only open: nobody can write the file. */
		int rfd = open("/mnt/file", O_RDONLY | O_CLOEXEC);
		unsigned char *f = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, rfd, 0);
		unsigned long p[3];

		pattern(a, PAGE, 1, 0);
		memset(a + PAGE, 1, PAGE);
		memset(a + PAGE, 0, PAGE);
		close(ffd);
		close(rfd);
		p[0] = pfn_of(a);
		p[1] = pfn_of(a + PAGE);
		p[2] = f[0] == f[1] ? 0 : pfn_of(f);
		if (write(pipefd[1], p, sizeof(p)) != sizeof(p))
			_exit(1);
		for (;;)
			pause();
	}
	ASSERT_EQ((ssize_t)sizeof(pfns), read(pipefd[0], pfns, sizeof(pfns)));
	/* Nobody has the file open for writing: its page is read in place. */
	close(ffd);
	ASSERT_NE(0UL, pfns[0]);
	ASSERT_NE(0UL, pfns[1]);
	ASSERT_NE(0UL, pfns[2]);
	t[0].pfn = pfns[0];
	pattern(t[0].expect, PAGE, 1, 0);
	t[1].pfn = pfns[1];
	t[2].pfn = pfns[2];

	mine = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, mine);
	pattern(mine, PAGE, 4, 0);
	memcpy(t[3].expect, mine, PAGE);
	t[3].pfn = pfn_of(mine);
	ASSERT_NE(0UL, t[3].pfn);

	/* Pages that are free at the call. */
	junk = mmap(NULL, NR_FREED * PAGE, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, junk);
	ASSERT_NE(NULL, freed);
	for (int i = 0; i < NR_FREED; i++) {
		junk[i * PAGE] = 1;
		freed[i] = pfn_of(junk + i * PAGE);
	}
	munmap(junk, NR_FREED * PAGE);

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	fd = sys_snapshot_kernel(0, 0);
	/* Written right after the atomic point: the stream has the old contents. */
	pattern(mine, PAGE, 5, 0);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
	/* Its file cannot be written while the image is open... */
	errno = 0;
	ffd = open("/mnt/file", O_WRONLY | O_CLOEXEC);
	EXPECT_EQ(-1, ffd);
	EXPECT_EQ(ETXTBSY, errno);
	if (ffd >= 0)
		close(ffd);
	ASSERT_EQ(0, geometry(fd, &g));
	ASSERT_EQ(0, read_stream(fd, &s));
	close(fd);
	close(frz);
	reap(child);
	/* ... and can again once it is closed. */
	ffd = open("/mnt/file", O_WRONLY | O_CLOEXEC);
	EXPECT_LE(0, ffd);
	if (ffd >= 0)
		close(ffd);
	umount("/mnt");

	TH_LOG("geometry: copied %llu, streamed %llu, zero %llu, meta %llu pages",
	       g.copied_pages, g.streamed_pages, g.zero_pages, g.meta_pages);
	TH_LOG("stream: %llu bytes in %lu reads", g.image_bytes, s.calls);
	EXPECT_EQ(PAGE, g.page_size);
	EXPECT_EQ(0U, g.flags);
	EXPECT_EQ(g.image_bytes, s.bytes);
	EXPECT_EQ(g.image_bytes, s.hdr.size);
	EXPECT_EQ(g.copied_pages + g.streamed_pages, s.hdr.image_pages);
	EXPECT_EQ(1 + g.meta_pages + s.hdr.image_pages, s.hdr.pages);
	EXPECT_EQ(g.copied_pages + g.streamed_pages + g.zero_pages, s.nr_pfns);
	EXPECT_EQ(g.zero_pages, s.nr_zero);
	EXPECT_EQ(s.hdr.image_pages, s.data_pages);
#ifdef __x86_64__
	EXPECT_EQ(X86_64_RESTORE_MAGIC, ((struct x86_restore_data_record *)&s.hdr)->magic);
	EXPECT_NE(0UL, ((struct x86_restore_data_record *)&s.hdr)->cr3);
#endif
	/* All RAM pages, reserved ones too: at least MemTotal. */
	EXPECT_LE(meminfo_kb("MemTotal"), (long)(s.hdr.num_physpages * 4));
	EXPECT_LT(0ULL, g.streamed_pages);
	EXPECT_LT(0ULL, g.zero_pages);
	/* Large reads: each read() but the last fills the 4 MiB buffer. */
	EXPECT_GE((s.bytes + CHUNK - 1) / CHUNK, s.calls);
	/* Pages freed just before the call are not listed (a few may be reused). */
	EXPECT_GT(NR_FREED / 20UL, listed(&s, freed, NR_FREED))
		TH_LOG("%lu of %d pages freed before the call are in the image",
		       listed(&s, freed, NR_FREED), NR_FREED);

	EXPECT_TRUE(t[0].seen && t[0].matched) TH_LOG("child's pattern page, pfn %lu", t[0].pfn);
	EXPECT_TRUE(t[1].zero && !t[1].seen) TH_LOG("child's zero page, pfn %lu", t[1].pfn);
	EXPECT_TRUE(t[2].seen && t[2].matched) TH_LOG("file page, pfn %lu", t[2].pfn);
	EXPECT_TRUE(t[3].seen && t[3].matched) TH_LOG("caller's page, pfn %lu", t[3].pfn);
	free(s.pfns);
	free(t);
	free(freed);
}

/*
 * Closing the image without halting, 20 times: the stopped child runs again
 * when the freeze is released, a write to the dm-hibsnap device made while
 * the image is open reaches its origin only when the image is closed, and
 * memory comes back.
 */
TEST_F_TIMEOUT(slow, abort_restores_everything, 300)
{
	unsigned char *w = aligned_alloc(PAGE, PAGE), *r = aligned_alloc(PAGE, PAGE);
	unsigned long *counter = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	long free0 = 0, slab0 = 0, free1, slab1;
	int cycle;
	pid_t child;

	ASSERT_NE(MAP_FAILED, counter);
	ASSERT_EQ(0, run(NULL, 0, "dmsetup mknodes hsboot"));
	child = fork();
	ASSERT_LE(0, child);
	if (child == 0) {
		for (;;)
			__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
	}
	for (cycle = 0; cycle < 20; cycle++) {
		unsigned long before;
		double deadline;
		int frz, fd;

		if (cycle == 1) {
			free0 = free_kb();
			slab0 = meminfo_kb("Slab");
		}
		frz = sys_freeze_processes(0);
		ASSERT_LE(0, frz);
		EXPECT_EQ('T', proc_state(child));
		fd = sys_snapshot_kernel(256, 0);
		ASSERT_LE(0, fd) TH_LOG("cycle %d: %s", cycle, strerror(errno));

		pattern(w, PAGE, 100 + cycle, 0);
		ASSERT_EQ(0, pio(BOOT_DM, 1, w, PAGE, cycle * PAGE));
		ASSERT_EQ(0, pio(BOOT_DM, 0, r, PAGE, cycle * PAGE));
		EXPECT_EQ(0, memcmp(w, r, PAGE));
		ASSERT_EQ(0, pio(BOOT_ORIGIN, 0, r, PAGE, cycle * PAGE));
		EXPECT_NE(0, memcmp(w, r, PAGE))
			TH_LOG("cycle %d: write reached the origin in the snapshot", cycle);
		if (cycle % 2)
			EXPECT_LT(0, drain(fd, NULL));
		close(fd);
		ASSERT_EQ(0, pio(BOOT_ORIGIN, 0, r, PAGE, cycle * PAGE));
		EXPECT_EQ(0, memcmp(w, r, PAGE)) TH_LOG("cycle %d: write lost by the merge", cycle);

		before = __atomic_load_n(counter, __ATOMIC_RELAXED);
		EXPECT_EQ('T', proc_state(child));
		close(frz);
		deadline = now_s() + 10;
		while (__atomic_load_n(counter, __ATOMIC_RELAXED) == before && now_s() < deadline)
			;
		EXPECT_NE(before, __atomic_load_n(counter, __ATOMIC_RELAXED))
			TH_LOG("cycle %d: child did not run again", cycle);
	}
	reap(child);
	free1 = free_kb();
	slab1 = meminfo_kb("Slab");
	TH_LOG("free %ld -> %ld kB, Slab %ld -> %ld kB over 19 cycles",
	       free0, free1, slab0, slab1);
	EXPECT_LT(free0 - 4096, free1);
	EXPECT_LT(slab1, slab0 + 1024);
	free(w);
	free(r);
}

/*
 * A file written (and fsync()ed) on ext4 over the dm-hibsnap device while
 * an image is open: the writes are kept apart, and when the image is
 * closed they are merged into the device, so the file is on disk, and the
 * filesystem checks clean.
 */
TEST_F_TIMEOUT(slow, file_written_while_open_is_on_disk, 300)
{
	unsigned char *w = malloc(64 * 1024);
	int frz, fd, ffd;

	ASSERT_NE(NULL, w);
	ASSERT_EQ(0, mount_fresh_ext4());
	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	fd = sys_snapshot_kernel(0, 0);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
	pattern(w, 64 * 1024, 21, 0);
	ffd = open("/mnt/meanwhile", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_LE(0, ffd);
	ASSERT_EQ(64 * 1024, write(ffd, w, 64 * 1024));
	ASSERT_EQ(0, fsync(ffd));
	close(ffd);
	close(fd);
	close(frz);
	EXPECT_EQ(0, boot_dm_file_is("meanwhile", w, 64 * 1024));
	free(w);
}

/*
 * Writes numbered 4 KiB records round a 1 MiB ring in /mnt/log until
 * killed, without fsync, counting them in @written (shared memory).
 */
static pid_t ring_writer(unsigned long *written)
{
	pid_t pid = fork();

	if (pid == 0) {
		unsigned char rec[4096];
		unsigned long n;
		int fd;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open("/mnt/log", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0)
			_exit(1);
		for (n = 0;; n++) {
			pattern(rec, sizeof(rec), n, 0);
			if (pwrite(fd, rec, sizeof(rec), (n % 256) * sizeof(rec)) != sizeof(rec))
				_exit(2);
			__atomic_store_n(written, n + 1, __ATOMIC_RELAXED);
		}
	}
	return pid;
}

/*
 * Whether the ext4 superblock of @dev says its journal needs recovery
 * (EXT4_FEATURE_INCOMPAT_RECOVER), read with O_DIRECT: the device's own page
 * cache may hold an older superblock (device-mapper writes it with bios).
 */
static int needs_recovery(const char *dev)
{
	unsigned char *sb = aligned_alloc(PAGE, PAGE);
	uint32_t incompat;
	int fd, ret = -1;

	fd = open(dev, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (sb && fd >= 0 && pread(fd, sb, PAGE, 0) == (ssize_t)PAGE &&
	    sb[1024 + 0x38] == 0x53 && sb[1024 + 0x39] == 0xef) {
		memcpy(&incompat, sb + 1024 + 0x60, sizeof(incompat));
		ret = !!(incompat & 0x4);
	}
	if (fd >= 0)
		close(fd);
	free(sb);
	return ret;
}

/*
 * The disk at the atomic point is a clean filesystem, even with a process
 * writing to a file on it through the freeze and the snapshot: the
 * dm-hibsnap device was suspended with its filesystem frozen (journal
 * flushed, needs_recovery cleared) before the atomic point. The origin is
 * that disk for as long as the image is open; it checks clean with e2fsck.
 * Mounted and unfrozen, the same filesystem needs recovery, as the first
 * check shows.
 */
TEST_F_TIMEOUT(slow, disk_frozen_clean_at_atomic_point, 300)
{
	unsigned long *written = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	unsigned long at;
	pid_t writer;
	int frz, fd, i, mnt;

	ASSERT_NE(MAP_FAILED, written);
	ASSERT_EQ(0, mount_fresh_ext4());
	writer = ring_writer(written);
	ASSERT_LT(0, writer);
	for (i = 0; __atomic_load_n(written, __ATOMIC_RELAXED) < 512; i++) {
		ASSERT_LT(i, 3000) TH_LOG("writer '%c'", proc_state(writer));
		usleep(10000);
	}
	mnt = open("/mnt", O_RDONLY | O_CLOEXEC);
	ASSERT_EQ(0, syncfs(mnt));
	close(mnt);
	EXPECT_EQ(1, needs_recovery(BOOT_ORIGIN)) TH_LOG("mounted, yet no recovery needed?");
	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	/* The writer runs on through the snapshot, a helper continued on purpose. */
	ASSERT_EQ(0, kill(writer, SIGCONT));
	fd = sys_snapshot_kernel(0, 0);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
	at = __atomic_load_n(written, __ATOMIC_RELAXED);
	EXPECT_EQ(0, needs_recovery(BOOT_ORIGIN)) TH_LOG("origin not frozen clean");
	/* The origin's page cache may be older than the disk. */
	ASSERT_EQ(0, write_str("/proc/sys/vm/drop_caches", "1"));
	EXPECT_EQ(0, run(NULL, 0, "/usr/sbin/e2fsck -fn " BOOT_ORIGIN));
	/* And the writer went on writing after it. */
	for (i = 0; __atomic_load_n(written, __ATOMIC_RELAXED) <= at + 256; i++) {
		ASSERT_LT(i, 3000) TH_LOG("writer stuck at %lu, '%c'", at, proc_state(writer));
		usleep(10000);
	}
	close(fd);
	close(frz);
	kill(writer, SIGKILL);
	reap(writer);
	EXPECT_EQ(0, umount("/mnt"));
	EXPECT_EQ(0, run(NULL, 0, "/usr/sbin/e2fsck -fn " BOOT_DM));
	munmap(written, PAGE);
}

/* Takes a freeze (returned) and expects snapshot_kernel(2) to fail with EBUSY. */
static int freeze_and_expect_ebusy(struct __test_metadata *_metadata)
{
	int frz = sys_freeze_processes(0), fd;

	EXPECT_LE(0, frz);
	errno = 0;
	fd = sys_snapshot_kernel(0, 0);
	EXPECT_EQ(-1, fd);
	EXPECT_EQ(EBUSY, errno) TH_LOG("snapshot_kernel: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	return frz;
}

/*
 * A dm-hibsnap device that userspace has suspended cannot be suspended with
 * its filesystem frozen: the call fails with EBUSY and changes nothing.
 */
TEST_F_TIMEOUT(slow, suspended_device_is_ebusy, 300)
{
	char out[256];
	int frz, fd;

	ASSERT_EQ(0, run(NULL, 0, "dmsetup suspend hsboot"));
	frz = freeze_and_expect_ebusy(_metadata);
	ASSERT_LE(0, frz);
	ASSERT_EQ(0, run(out, sizeof(out), "dmsetup info -C --noheadings -o suspended hsboot"));
	EXPECT_EQ(0, strncmp(out, "Suspended", 9)) TH_LOG("hsboot: %s", out);
	ASSERT_EQ(0, run(NULL, 0, "dmsetup resume hsboot"));
	/* Nothing left behind: a snapshot works now. */
	fd = sys_snapshot_kernel(0, 0);
	EXPECT_LE(0, fd) TH_LOG("snapshot_kernel after resume: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	close(frz);
}

/* ext4 on /dev/ram2, a block device that is not a dm-hibsnap device, on /mnt2. */
#define OTHER_DEV "/dev/ram2"
#define OTHER_MNT "/mnt2"

static int mount_other(unsigned long flags)
{
	if (run(NULL, 0, "/usr/sbin/mke2fs -q -F -t ext4 -b 4096 " OTHER_DEV))
		return -1;
	mkdir(OTHER_MNT, 0755);
	return mount(OTHER_DEV, OTHER_MNT, "ext4", flags, NULL);
}

/*
 * A filesystem mounted writable on a block device that dm-hibsnap does not
 * snapshot: the call fails with EBUSY, and the kernel log names the device
 * and the mount point. Read-only, it is no obstacle.
 */
TEST_F_TIMEOUT(slow, writable_other_fs_is_ebusy, 300)
{
	int frz, fd;

	ASSERT_EQ(0, mount_other(0));
	frz = freeze_and_expect_ebusy(_metadata);
	ASSERT_LE(0, frz);
	EXPECT_EQ(0, run(NULL, 0, "dmesg | grep -q '%s'",
			 "ram2 (ext4) on " OTHER_MNT " is mounted writable"));
	ASSERT_EQ(0, mount(NULL, OTHER_MNT, NULL, MS_REMOUNT | MS_RDONLY, NULL));
	fd = sys_snapshot_kernel(0, 0);
	EXPECT_LE(0, fd) TH_LOG("read-only: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	close(frz);
	EXPECT_EQ(0, umount(OTHER_MNT));
}

/*
 * With HIBSNAP_SNAPSHOT_FREEZE_OTHERS the other filesystem on OTHER_MNT is
 * frozen instead, until the image is closed: a write to it waits (in D)
 * while the image is open and completes once it is closed.
 */
static void frozen_until_close(struct __test_metadata *_metadata)
{
	int frz, fd, status, i;
	pid_t writer;

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	fd = sys_snapshot_kernel(0, HIBSNAP_SNAPSHOT_FREEZE_OTHERS);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
	/* Forked after the freeze: it runs. */
	writer = fork();
	ASSERT_LE(0, writer);
	if (writer == 0) {
		int f;

		/* Its copy of the image fd would keep the image open. */
		close(fd);
		f = open(OTHER_MNT "/late", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

		_exit(f >= 0 && write(f, "x", 1) == 1 && !fsync(f) ? 0 : 1);
	}
	for (i = 0; proc_state(writer) != 'D'; i++) {
		ASSERT_LT(i, 1000) TH_LOG("writer '%c', not blocked", proc_state(writer));
		usleep(10000);
	}
	usleep(200000);
	EXPECT_EQ(0, waitpid(writer, &status, WNOHANG)) TH_LOG("the write went through");
	close(fd);
	ASSERT_EQ(writer, waitpid(writer, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(frz);
}

TEST_F_TIMEOUT(slow, other_fs_frozen_until_close, 300)
{
	ASSERT_EQ(0, mount_other(0));
	frozen_until_close(_metadata);
	EXPECT_EQ(0, umount(OTHER_MNT));
}

/*
 * Filesystems with a disk that s_bdev does not show: btrfs has no s_bdev at
 * all; ext4 and XFS show their main device there, not an external journal or
 * log. Every such disk is claimed for its superblock, and each counts
 * (iterate_super_bdevs()): with one that is not a dm-hibsnap device (a plain
 * RAM disk, OTHER_DEV) the call fails with EBUSY, the kernel log naming the
 * filesystem and its mount point, and HIBSNAP_SNAPSHOT_FREEZE_OTHERS freezes
 * it until the image is closed. btrfs on a dm-hibsnap device alone (hsdisks,
 * over /dev/ram3) is snapshotted, like ext4.
 */
#define DISKS_DM "/dev/mapper/hsdisks"
#define MKE2FS "/usr/sbin/mke2fs -q -F -b 4096 "
/* mkfs.xfs makes a filesystem under 300 MiB only for fstests. */
#define SMALL_XFS "TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 "

FIXTURE(disks) {
	int dm_ready;
};

FIXTURE_VARIANT(disks) {
	const char *mkfs;	/* makes the filesystem on dev */
	const char *type, *dev, *opts;
	const char *log;	/* in the kernel log, with EBUSY; NULL: snapshotted */
};

FIXTURE_VARIANT_ADD(disks, btrfs_on_a_plain_disk) {
	.mkfs = "/usr/sbin/mkfs.btrfs -q -f -M " OTHER_DEV,
	.type = "btrfs", .dev = OTHER_DEV,
	.log = "(btrfs) on " OTHER_MNT " is mounted writable",
};

FIXTURE_VARIANT_ADD(disks, btrfs_on_dm_hibsnap) {
	.mkfs = "/usr/sbin/mkfs.btrfs -q -f -M " DISKS_DM,
	.type = "btrfs", .dev = DISKS_DM,
};

FIXTURE_VARIANT_ADD(disks, ext4_journal_on_a_plain_disk) {
	.mkfs = MKE2FS "-O journal_dev " OTHER_DEV " && " MKE2FS "-t ext4 -J device=" OTHER_DEV
		" " DISKS_DM,
	.type = "ext4", .dev = DISKS_DM,
	.log = "(ext4) on " OTHER_MNT " is mounted writable",
};

FIXTURE_VARIANT_ADD(disks, xfs_log_on_a_plain_disk) {
	.mkfs = SMALL_XFS "/usr/sbin/mkfs.xfs -q -f -l logdev=" OTHER_DEV " " DISKS_DM,
	.type = "xfs", .dev = DISKS_DM, .opts = "logdev=" OTHER_DEV,
	.log = "(xfs) on " OTHER_MNT " is mounted writable",
};

FIXTURE_SETUP(disks)
{
	char out[512];

	self->dm_ready = !run(out, sizeof(out), "dmsetup create --noudevsync %s && %s",
			      "hsdisks --table '0 131072 hibsnap /dev/ram3'",
			      "dmsetup mknodes --noudevsync hsdisks");
	ASSERT_TRUE(self->dm_ready) TH_LOG("%s", out);
	ASSERT_EQ(0, run(out, sizeof(out), "%s", variant->mkfs)) TH_LOG("%s", out);
	mkdir(OTHER_MNT, 0755);
	ASSERT_EQ(0, mount(variant->dev, OTHER_MNT, variant->type, 0, variant->opts))
		TH_LOG("mount %s: %s", variant->type, strerror(errno));
}

FIXTURE_TEARDOWN(disks)
{
	umount(OTHER_MNT);
	if (self->dm_ready)
		run(NULL, 0, "dmsetup remove --noudevsync hsdisks");
}

TEST_F_TIMEOUT(disks, ebusy_or_frozen_unless_all_dm_hibsnap, 300)
{
	int frz, fd;

	if (!variant->log) {
		frz = sys_freeze_processes(0);
		ASSERT_LE(0, frz);
		fd = sys_snapshot_kernel(0, 0);
		EXPECT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		close(frz);
		return;
	}
	/* The kernel log from here on. */
	ASSERT_EQ(0, write_str("/dev/kmsg", "hibsnap-test: disks\n"));
	frz = freeze_and_expect_ebusy(_metadata);
	ASSERT_LE(0, frz);
	close(frz);
	EXPECT_EQ(0, run(NULL, 0, "dmesg | sed -n '/hibsnap-test: disks/,$p' | grep -qF '%s'",
			 variant->log))
		TH_LOG("no \"%s\" in the kernel log", variant->log);
	frozen_until_close(_metadata);
}

/*
 * Runs @cmd with an image open (the freeze held, snapshot_kernel() done), its
 * output in @out; 0, or -1 if the image could not be taken or @cmd failed.
 */
static int run_during_image(char *out, size_t len, const char *cmd)
{
	int frz = sys_freeze_processes(0), fd = -1, ret = -1;

	if (frz >= 0)
		fd = sys_snapshot_kernel(0, 0);
	if (fd >= 0)
		ret = run(out, len, "%s", cmd);
	else
		snprintf(out, len, "no image: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	if (frz >= 0)
		close(frz);
	return ret;
}

/* A linear device over /dev/ram0 with a hibsnap table loaded, not resumed. */
#define CREATE_INACTIVE \
	"dmsetup create --noudevsync hsinactive --table '0 8192 linear /dev/ram0 0' && " \
	"dmsetup reload hsinactive --table '0 8192 hibsnap /dev/ram0'"

/*
 * A hibsnap table loaded but not made live (dmsetup reload, no resume) is
 * neither suspended nor snapshotted: its target enters the registry only
 * when its device resumes with it.
 */
TEST_F_TIMEOUT(slow, inactive_table_is_not_snapshotted, 120)
{
	char out[512];

	run(NULL, 0, "dmsetup remove --noudevsync hsinactive");
	ASSERT_EQ(0, run(out, sizeof(out), CREATE_INACTIVE)) TH_LOG("%s", out);
	ASSERT_EQ(0, run_during_image(out, sizeof(out), "dmsetup status --inactive hsinactive"))
		TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "hibsnap passthrough")) TH_LOG("inactive table: %s", out);
	/* Made live, it is in the registry: the next image snapshots it. */
	ASSERT_EQ(0, run(out, sizeof(out), "dmsetup resume hsinactive")) TH_LOG("%s", out);
	ASSERT_EQ(0, run_during_image(out, sizeof(out), "dmsetup status hsinactive"))
		TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "hibsnap snapshot")) TH_LOG("live table: %s", out);
	EXPECT_EQ(0, run(NULL, 0, "dmsetup remove --noudevsync hsinactive"));
}

/* hibsnap leaves mainline hibernation working: /dev/snapshot makes an image. */
TEST_F_TIMEOUT(slow, mainline_snapshot_dev_still_works, 300)
{
	EXPECT_EQ(0, devsnapshot_create());
}

/*
 * The steps of snapshot_kernel(2), in order, and how a test makes each fail:
 * hibsnap's own through its fault-injection points (debugfs hibsnap/fail_*),
 * the PM core's through fail_function, which makes the named function return
 * -EIO. See Documentation/fault-injection/fault-injection.rst.
 */
static const struct step {
	const char *own;	/* hibsnap's fault_attr: hibsnap/fail_<own>/ */
	const char *func;	/* or a function fail_function makes fail */
} steps[] = {
	{ .own = "reserve" },
	{ .own = "sync" },
	{ .own = "other_filesystems" },
	{ .own = "block_suspend" },
	{ .func = "dpm_prepare" },
	{ .func = "dpm_suspend" },
	{ .func = "dpm_suspend_end" },
	{ .func = "freeze_secondary_cpus" },
	{ .func = "syscore_suspend" },
	{ .func = "swsusp_save" },
	{ .own = "block_snapshot" },
	{ .own = "swap" },
	{ .own = "install" },
};

#define NR_STEPS ((int)ARRAY_SIZE(steps))

/* Writes @val to the file @name in the directory @dir; 0 or -1. */
static int write_in(const char *dir, const char *name, const char *val)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return write_str(path, val);
}

/* Makes @st fail once, with a line in the kernel log, when next taken; 0 or -1. */
static int inject(const struct step *st)
{
	char dir[256];

	if (st->own) {
		snprintf(dir, sizeof(dir), FAIL_HIBSNAP "/fail_%s", st->own);
	} else {
		snprintf(dir, sizeof(dir), FAIL_FUNCTION "/%s", st->func);
		if (write_in(FAIL_FUNCTION, "inject", st->func) ||
		    write_in(dir, "retval", "0xfffffffffffffffb"))	/* -EIO */
			return -1;
		snprintf(dir, sizeof(dir), FAIL_FUNCTION);
	}
	return write_in(dir, "verbose", "1") || write_in(dir, "interval", "1") ||
	       write_in(dir, "probability", "100") || write_in(dir, "times", "1");
}

/* Disarms @st, whether it fired or not; 0 or -1. */
static int disarm(const struct step *st)
{
	char dir[256];

	if (!st->own) {
		snprintf(dir, sizeof(dir), "!%s", st->func);
		return write_in(FAIL_FUNCTION, "inject", dir);
	}
	snprintf(dir, sizeof(dir), FAIL_HIBSNAP "/fail_%s", st->own);
	return write_in(dir, "probability", "0");
}

/*
 * An injected failure at each step of the pipeline: the call fails with EIO
 * and leaves the system whole: the freeze still holds (and releases) its
 * tasks, the dm-hibsnap device writes through to its origin, the hibernation
 * lock is free, and memory is back.
 */
TEST_F_TIMEOUT(slow, failure_at_each_step_rolls_back, 300)
{
	unsigned char *w = aligned_alloc(PAGE, PAGE), *r = aligned_alloc(PAGE, PAGE);
	long free0, free1;
	char num[16];
	int step;

	ASSERT_EQ(0, access(FAIL_HIBSNAP "/fail_reserve/probability", W_OK))
		TH_LOG("no hibsnap fault injection (CONFIG_FAULT_INJECTION_DEBUG_FS?)");
	ASSERT_EQ(0, access(FAIL_FUNCTION "/inject", W_OK))
		TH_LOG("no fail_function (CONFIG_FAIL_FUNCTION?)");
	ASSERT_EQ(0, run(NULL, 0, "dmsetup mknodes hsboot"));
	free0 = free_kb();
	for (step = 0; step < NR_STEPS; step++) {
		const struct step *st = &steps[step];
		const char *name = st->own ? st->own : st->func;
		pid_t child = sleeper();
		int frz, fd;

		ASSERT_LE(0, child);
		frz = sys_freeze_processes(0);
		ASSERT_LE(0, frz);
		ASSERT_EQ(0, inject(st)) TH_LOG("%s: cannot inject", name);
		errno = 0;
		fd = sys_snapshot_kernel(0, 0);
		ASSERT_EQ(0, disarm(st));
		EXPECT_EQ(-1, fd) TH_LOG("%s did not fail", name);
		EXPECT_EQ(EIO, errno) TH_LOG("%s: %s", name, strerror(errno));
		if (fd >= 0)
			close(fd);
		/* The freeze is untouched, and the device writes through. */
		EXPECT_EQ('T', proc_state(child));
		ASSERT_EQ(0, run(num, sizeof(num),
				 "dmsetup info -C --noheadings -o suspended hsboot"));
		ASSERT_EQ(0, strncmp(num, "Active", 6))
			TH_LOG("%s: hsboot left suspended", name);
		pattern(w, PAGE, 201 + step, 0);
		ASSERT_EQ(0, pio(BOOT_DM, 1, w, PAGE, (step + 1) * PAGE));
		ASSERT_EQ(0, pio(BOOT_ORIGIN, 0, r, PAGE, (step + 1) * PAGE));
		EXPECT_EQ(0, memcmp(w, r, PAGE)) TH_LOG("%s: device left in snapshot", name);
		/* The locks are free: a snapshot works at once. */
		fd = sys_snapshot_kernel(0, 0);
		EXPECT_LE(0, fd) TH_LOG("%s: next snapshot: %s", name, strerror(errno));
		if (fd >= 0) {
			EXPECT_LT(0, drain(fd, NULL));
			close(fd);
		}
		close(frz);
		EXPECT_NE('T', proc_state(child)) TH_LOG("%s: child left stopped", name);
		reap(child);
	}
	free1 = free_kb();
	TH_LOG("free %ld -> %ld kB over %d failed steps", free0, free1, NR_STEPS);
	EXPECT_LT(free0 - 4096, free1);
	free(w);
	free(r);
}

/* Runs a shell command and logs its output as kselftest diagnostics. */
static void run_log(const char *cmd)
{
	char out[2048], *line, *save;

	run(out, sizeof(out), "%s", cmd);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		printf("# %s\n", line);
}

/* Maps @len bytes of anon memory with a pattern and pages them out. */
static unsigned char *paged_out(size_t len, unsigned int seed)
{
	unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return NULL;
	pattern(m, len, seed, 0);
	if (madvise(m, len, MADV_PAGEOUT))
		printf("# madvise(MADV_PAGEOUT): %s\n", strerror(errno));
	return m;
}

/*
 * Swap while an image is open (swap on /dev/ram2): what is on swap stays
 * readable, nothing new is written (a running task's pages cannot be paged
 * out), and after the image is closed swap takes writes again. Swap is off
 * again at the end, for the half-of-RAM test.
 */
TEST_F_TIMEOUT(slow, swap_kept_while_open, 300)
{
	const size_t len = 4UL << 20;
	unsigned char *want = malloc(len), *mine, *mine2;
	long before, during, after;
	int frz, fd;

	ASSERT_NE(NULL, want);
	ASSERT_EQ(0, run(NULL, 0, "mkswap /dev/ram2 && swapon /dev/ram2"));
	mine = paged_out(len, 11);
	ASSERT_NE(NULL, mine);
	before = vm_swap_kb(getpid());
	if (before <= 0)
		run_log("grep -E 'pswpout|pgsteal' /proc/vmstat; grep Swap /proc/meminfo");
	ASSERT_LT(0, before) TH_LOG("MADV_PAGEOUT put nothing in swap");

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	fd = sys_snapshot_kernel(0, 0);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
	mine2 = paged_out(len, 12);
	ASSERT_NE(NULL, mine2);
	during = vm_swap_kb(getpid());
	/* Swapped-out pages read back, from the kept swap. */
	pattern(want, len, 11, 0);
	EXPECT_EQ(0, memcmp(mine, want, len));
	EXPECT_EQ(0, run(NULL, 0, "grep -q /dev/ram2 /proc/swaps"));
	close(fd);
	close(frz);
	madvise(mine2, len, MADV_PAGEOUT);
	after = vm_swap_kb(getpid());
	TH_LOG("VmSwap: %ld kB before, %ld kB with the image open, %ld kB after", before, during,
	       after);
	EXPECT_GE(before, during) TH_LOG("pages were written to swap while the image was open");
	EXPECT_LT((long)(len / 2048), after) TH_LOG("swap takes no writes after the image closed");
	pattern(want, len, 12, 0);
	EXPECT_EQ(0, memcmp(mine2, want, len));
	EXPECT_EQ(0, run(NULL, 0, "swapoff /dev/ram2"));
	munmap(mine, len);
	munmap(mine2, len);
	free(want);
}

/*
 * The half-of-RAM case: a stopped child holds 700 MiB of non-zero anon
 * memory in a 1 GiB VM without swap. hibsnap takes and streams the whole
 * image; mainline /dev/snapshot cannot (its image must fit in half of RAM).
 */
TEST_F_TIMEOUT(slow, more_than_half_of_ram, 300)
{
	const size_t big = 700UL << 20;
	struct hibsnap_geometry g;
	unsigned long calls = 0;
	int pipefd[2], frz, fd, mainline;
	long total_kb = meminfo_kb("MemTotal"), bytes, free0, free1;
	double t0, t_snap, t_read;
	pid_t child;
	char c;

	if (total_kb > (1200L << 10) || meminfo_kb("SwapTotal") != 0)
		SKIP(return, "needs a VM of about 1 GiB without swap (MemTotal %ld kB)", total_kb);
	/* The RAM disks' pages would count as kernel memory: give them back. */
	run(NULL, 0, "blkdiscard /dev/ram0");
	free0 = free_kb();
	ASSERT_EQ(0, pipe(pipefd));
	child = fork();
	ASSERT_LE(0, child);
	if (child == 0) {
		unsigned char *m = mmap(NULL, big, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

		if (m == MAP_FAILED)
			_exit(1);
		for (size_t i = 0; i < big; i += PAGE)
			memset(m + i, 1 + (int)(i / PAGE % 255), PAGE);
		if (write(pipefd[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	ASSERT_EQ(1, read(pipefd[0], &c, 1));

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	t0 = now_s();
	fd = sys_snapshot_kernel(0, 0);
	t_snap = now_s() - t0;
	ASSERT_LE(0, fd) TH_LOG("hibsnap: snapshot_kernel: %s", strerror(errno));
	ASSERT_EQ(0, geometry(fd, &g));
	t0 = now_s();
	bytes = drain(fd, &calls);
	t_read = now_s() - t0;
	close(fd);
	close(frz);

	mainline = devsnapshot_create();
	reap(child);
	/* No pin is left: the child's 700 MiB are free again. */
	free1 = free_kb();
	EXPECT_LT(free0 - 16384, free1) TH_LOG("free %ld kB before the child, %ld after", free0,
					       free1);

	printf("# %-16s | %-40s | %s\n", "", "hibsnap snapshot_kernel(2)",
	       "mainline /dev/snapshot CREATE_IMAGE");
	printf("# %-16s | %-40s | %s\n", "700 MiB child",
	       "ok", mainline ? strerror(-mainline) : "ok");
	printf("# %-16s | copied %llu, streamed %llu, zero %llu pages | -\n", "image",
	       g.copied_pages, g.streamed_pages, g.zero_pages);
	printf("# %-16s | %ld MiB in %lu reads, %.2f s + %.2f s (TCG) | -\n", "stream",
	       bytes >> 20, calls, t_snap, t_read);
	EXPECT_EQ((long)g.image_bytes, bytes);
	EXPECT_LE(big / PAGE, g.streamed_pages);
	EXPECT_NE(0, mainline) TH_LOG("mainline /dev/snapshot made a 700 MiB image in 1 GiB");
}

TEST_HARNESS_MAIN
