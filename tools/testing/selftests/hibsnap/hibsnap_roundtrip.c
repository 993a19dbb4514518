// SPDX-License-Identifier: GPL-2.0
/*
 * The minimal hibernate/resume round trip, across two boots of one kernel,
 * proving that the stream of snapshot_kernel(2) is a real image:
 *
 *   hibsnap_roundtrip save IMAGE_DEV SWAP_DEV FS_DEV
 *	turns swap on, starts a child holding a 16 MiB pattern (half of it
 *	paged out to swap), a child holding a 700 MiB pattern (all of it in
 *	RAM: most of a 1 GiB machine is user memory), a counter process and
 *	an appender of numbered, checksummed records to a file on ext4 on a
 *	dm-hibsnap device over FS_DEV; freezes, takes the image, releases the
 *	freeze and lets the appender run on (its writes go to the dm-hibsnap
 *	store, not to FS_DEV), writes the image raw to IMAGE_DEV (a header
 *	sector, then the stream from 4 KiB) and powers off. When the image is
 *	restored, the call returns again: the rest of the TAP output (the
 *	system resumed, the counter runs on, both patterns and the swapped-out
 *	pages read back, the file holds exactly the records written before the
 *	atomic point, e2fsck finds the filesystem clean, and the appender goes
 *	on) comes from the restored system.
 *
 *   hibsnap_roundtrip load IMAGE_DEV
 *	feeds the stream to the kernel's own loader: /dev/snapshot write(),
 *	then SNAPSHOT_ATOMIC_RESTORE. It returns only on failure.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <sys/shm.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/hibsnap.h>
#include <linux/suspend_ioctls.h>

#include "hibsnap_util.h"

#define PAGE 4096UL
#define CHUNK (4UL << 20)
#define HDR_MAGIC "HIBSNAP-ROUNDTRIP-IMAGE1"
/* A small pattern half paged out to swap, and a large one that is all in RAM. */
#define SWAPPED_MB 16UL
#define LARGE_MB 700UL
#define NR_TESTS 15
/* ext4 on a dm-hibsnap device over FS_DEV, with the appender's file. */
#define FS_DM "hsrt"
#define FS_MNT "/mnt"
#define RECORDS FS_MNT "/records"

struct header {
	char magic[32];
	uint64_t bytes;
};

static int nr, failed;

static void result(int ok, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d ", ok ? "" : "not ", ++nr);
	failed += !ok;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* A child holding a pattern of @mb MiB, and the pipes to talk to it. */
struct pattern {
	size_t mb;
	int pageout;		/* page half of it out to swap */
	int mixed;		/* in every kind of user memory, not only private */
	unsigned int seed;
	pid_t pid;
	int ready[2], go[2], verdict[2];
};

/* The kinds of memory a mixed pattern is spread over, with their shares. */
enum { MIX_PRIVATE, MIX_SHARED, MIX_TMPFS, MIX_SYSV, MIX_MEMFD, MIX_EXT4, NR_MIX };
static const char *const mix_name[NR_MIX] = {
	"private anonymous", "MAP_SHARED anonymous", "tmpfs file", "SysV shm", "memfd",
	"ext4 page cache",
};

static const unsigned int mix_percent[NR_MIX] = { 40, 20, 15, 15, 10, 0 };
#define MIX_EXT4_LEN (8UL << 20)
#define MIX_TMPFS_FILE "/run/hsmixed"
#define MIX_EXT4_FILE "/mnt/hsmixed"

/* A shared mapping of @len bytes of @fd (closed), or NULL. */
static unsigned char *map_fd(int fd, size_t len, int prot)
{
	void *m = MAP_FAILED;

	if (fd >= 0 && (!(prot & PROT_WRITE) || !ftruncate(fd, len)))
		m = mmap(NULL, len, prot, MAP_SHARED, fd, 0);
	if (fd >= 0)
		close(fd);
	return m == MAP_FAILED ? NULL : m;
}

/*
 * Region @kind of @len bytes for a pattern; the ext4 file is written with
 * the pattern of @seed at @off first, and mapped read-only: page cache of a
 * file nobody has open for writing.
 */
static unsigned char *mix_region(int kind, size_t len, unsigned int seed, size_t off)
{
	unsigned char *m = NULL, *buf;
	int fd, id;

	switch (kind) {
	case MIX_PRIVATE:
	case MIX_SHARED:
		m = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 (kind == MIX_SHARED ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
		return m == MAP_FAILED ? NULL : m;
	case MIX_TMPFS:
		fd = open(MIX_TMPFS_FILE, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		return map_fd(fd, len, PROT_READ | PROT_WRITE);
	case MIX_SYSV:
		id = shmget(IPC_PRIVATE, len, IPC_CREAT | 0600);
		m = id < 0 ? (void *)-1 : shmat(id, NULL, 0);
		/* Gone with the last detach: the child's exit. */
		if (id >= 0)
			shmctl(id, IPC_RMID, NULL);
		return m == (void *)-1 ? NULL : m;
	case MIX_MEMFD:
		return map_fd(memfd_create("hsmixed", MFD_CLOEXEC), len, PROT_READ | PROT_WRITE);
	case MIX_EXT4:
		fd = open(MIX_EXT4_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		buf = malloc(PAGE);
		for (size_t i = 0; fd >= 0 && buf && i < len; i += PAGE) {
			pattern(buf, PAGE, seed, off + i);
			if (write(fd, buf, PAGE) != PAGE)
				break;
		}
		free(buf);
		if (fd < 0 || fsync(fd) || close(fd))
			return NULL;
		m = map_fd(open(MIX_EXT4_FILE, O_RDONLY | O_CLOEXEC), len, PROT_READ);
		/* In the page cache, unless reclaim takes it back before the image. */
		if (m && madvise(m, len, MADV_POPULATE_READ))
			m = NULL;
		return m;
	}
	return NULL;
}

/*
 * The child holding the pattern: fills it (in private anonymous memory, or
 * spread over every kind of user memory when mixed), pages half of it out
 * to swap if asked to, then, each time a byte arrives on go, checks all of
 * it and writes the verdict.
 */
static void pattern_child(struct pattern *p)
{
	size_t len = p->mb << 20, region_len[NR_MIX] = { len }, off, base;
	unsigned char *region[NR_MIX] = { NULL }, *want = malloc(PAGE);
	int nr = 1, k;
	char verdict = 'y';

	if (p->mixed) {
		nr = NR_MIX;
		for (k = 1; k < NR_MIX; k++) {
			region_len[k] = len * mix_percent[k] / 100 / PAGE * PAGE;
			region_len[MIX_PRIVATE] -= region_len[k];
		}
		region_len[MIX_EXT4] = MIX_EXT4_LEN;
	}
	for (k = 0, base = 0; k < nr; base += region_len[k++]) {
		region[k] = mix_region(k, region_len[k], p->seed, base);
		if (!region[k] || !want) {
			printf("# %s of %zu MiB: %s\n", mix_name[k], region_len[k] >> 20,
			       strerror(errno));
			_exit(1);
		}
		if (k == MIX_EXT4)
			continue;
		for (off = 0; off < region_len[k]; off += PAGE)
			pattern(region[k] + off, PAGE, p->seed, base + off);
	}
	if (p->pageout && madvise(region[0], len / 2, MADV_PAGEOUT))
		printf("# madvise(MADV_PAGEOUT): %s\n", strerror(errno));
	if (p->mixed)
		for (k = 0; k < NR_MIX; k++)
			printf("# pattern %u: %zu MiB of %s\n", p->seed, region_len[k] >> 20,
			       mix_name[k]);
	if (write(p->ready[1], "r", 1) != 1)
		_exit(1);
	while (read(p->go[0], &verdict, 1) == 1) {
		verdict = 'y';
		for (k = 0, base = 0; k < nr; base += region_len[k++])
			for (off = 0; off < region_len[k]; off += PAGE) {
				pattern(want, PAGE, p->seed, base + off);
				if (memcmp(region[k] + off, want, PAGE)) {
					if (verdict == 'y')
						printf("# pattern %u: %s differs at %zu\n",
						       p->seed, mix_name[k], off);
					verdict = 'n';
				}
			}
		if (write(p->verdict[1], &verdict, 1) != 1)
			_exit(1);
	}
	_exit(1);
}

/* Starts the child of @p and waits until its pattern is in place. */
static int start_pattern(struct pattern *p)
{
	char c;

	if (pipe(p->ready) || pipe(p->go) || pipe(p->verdict))
		return -1;
	p->pid = fork();
	if (p->pid == 0)
		pattern_child(p);
	if (p->pid < 0 || read(p->ready[0], &c, 1) != 1)
		return -1;
	return 0;
}

/* Whether @fd becomes readable within @seconds. */
static int readable_within(int fd, int seconds)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, seconds * 1000) == 1;
}

/* Prints where @pid sleeps in the kernel. */
static void run_log_wchan(pid_t pid)
{
	char out[512];

	run(out, sizeof(out), "cat /proc/%d/wchan /proc/%d/status | grep -E 'State|^[a-z_]'",
	    pid, pid);
	printf("# %s\n", out);
}

/* Asks the child of @p to check its pattern: whether all of it is intact. */
static int check_pattern(struct pattern *p)
{
	char c;

	if (write(p->go[1], "g", 1) != 1)
		return 0;
	if (!readable_within(p->verdict[0], 120)) {
		printf("# pattern child %d stuck: state %c\n", p->pid, proc_state(p->pid));
		run_log_wchan(p->pid);
		return 0;
	}
	return read(p->verdict[0], &c, 1) == 1 && c == 'y';
}

/*
 * The appender's records: seq counts from 0, epoch says when the record was
 * made (0 up to the atomic point, 1 in the first boot after it, 2 in the
 * restored system after the release), crc covers the rest.
 */
struct record {
	uint64_t seq;
	uint32_t epoch;
	unsigned char payload[48];
	uint32_t crc;
};

/*
 * Shared with the appender: records whose write(2) returned, whether it is
 * parked, the epoch of its records, and the request to park.
 */
struct appender {
	unsigned long done, paused;
	unsigned int epoch;
	int pause;
};

static uint32_t crc32(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint32_t crc = ~0U;
	int k;

	while (len--) {
		crc ^= *p++;
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320U & -(crc & 1));
	}
	return ~crc;
}

static void make_record(struct record *r, uint64_t seq, uint32_t epoch)
{
	size_t i;

	r->seq = seq;
	r->epoch = epoch;
	for (i = 0; i < sizeof(r->payload); i++)
		r->payload[i] = seq * 131 + epoch * 17 + i;
	r->crc = crc32(r, offsetof(struct record, crc));
}

/*
 * The appender: one record a write(2) to RECORDS (O_APPEND), fdatasync(2)
 * every 32, so that the journal commits all the time; parks between two
 * records while asked to pause (see park() and unpark()).
 */
static void appender_child(struct appender *a)
{
	struct record r;
	uint64_t seq;
	int fd;

	fd = open(RECORDS, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		_exit(1);
	for (seq = 0;; seq++) {
		if (__atomic_load_n(&a->pause, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&a->paused, 1, __ATOMIC_RELEASE);
			while (__atomic_load_n(&a->pause, __ATOMIC_ACQUIRE))
				usleep(1000);
			__atomic_store_n(&a->paused, 0, __ATOMIC_RELEASE);
		}
		make_record(&r, seq, __atomic_load_n(&a->epoch, __ATOMIC_RELAXED));
		if (write(fd, &r, sizeof(r)) != sizeof(r))
			_exit(2);
		__atomic_store_n(&a->done, seq + 1, __ATOMIC_RELEASE);
		if ((seq + 1) % 32 == 0 && fdatasync(fd))
			_exit(3);
	}
}

/* disk_records(): the records' epochs may only grow. */
#define ANY_EPOCH (-2L)

/*
 * Reads RECORDS from the disk (O_DIRECT): the number of records, if every
 * one is whole, in order and of epoch 0 before @restored and of epoch 2
 * from it on (@restored == -1: all of epoch 0; ANY_EPOCH: epochs that never
 * go back); else -1, with the reason.
 */
static long disk_records(long restored)
{
	const size_t len = 1UL << 20;
	struct record *r = aligned_alloc(PAGE, len);
	long i = 0, k, ret = -1;
	uint32_t epoch, last_epoch = 0;
	ssize_t n = 1;
	int fd;

	fd = open(RECORDS, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (!r || fd < 0) {
		printf("# %s: %s\n", RECORDS, strerror(errno));
		goto out;
	}
	while ((n = read(fd, r, len)) > 0) {
		if (n % sizeof(*r)) {
			printf("# %s: a torn record at byte %ld\n", RECORDS,
			       i * (long)sizeof(*r) + n);
			goto out;
		}
		for (k = 0; k < n / (long)sizeof(*r); k++, i++) {
			epoch = restored >= 0 && i >= restored ? 2 : 0;
			if (restored == ANY_EPOCH)
				epoch = r[k].epoch >= last_epoch ? r[k].epoch : last_epoch;
			last_epoch = epoch;
			if (r[k].seq != (uint64_t)i || r[k].epoch != epoch ||
			    r[k].crc != crc32(&r[k], offsetof(struct record, crc))) {
				printf("# record %ld: seq %llu epoch %u (want %u), crc %s\n", i,
				       (unsigned long long)r[k].seq, r[k].epoch, epoch,
				       r[k].crc == crc32(&r[k], offsetof(struct record, crc)) ?
				       "good" : "bad");
				goto out;
			}
		}
	}
	if (n < 0)
		printf("# %s: read: %s\n", RECORDS, strerror(errno));
	else
		ret = i;
out:
	if (fd >= 0)
		close(fd);
	free(r);
	return ret;
}

/* Prints @text as TAP comment lines. */
static void print_lines(char *text)
{
	char *line, *save;

	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		printf("# %s\n", line);
}

/* Waits up to @seconds for *@v >= @want. */
static int reaches(unsigned long *v, unsigned long want, int seconds)
{
	double deadline = now_s() + seconds;

	while (__atomic_load_n(v, __ATOMIC_ACQUIRE) < want) {
		if (now_s() > deadline)
			return 0;
		usleep(10000);
	}
	return 1;
}

/*
 * ext4 on FS_DM, a dm-hibsnap device over @dev, mounted on FS_MNT, and the
 * appender writing to it: its pid, or -1.
 */
static pid_t start_appender(const char *dev, struct appender *a)
{
	pid_t pid;

	if (run(NULL, 0, "/usr/sbin/mke2fs -q -F -t ext4 -b 4096 %s", dev) ||
	    run(NULL, 0, "dmsetup create %s --table \"0 $(blockdev --getsz %s) hibsnap %s\"",
		FS_DM, dev, dev) ||
	    run(NULL, 0, "dmsetup mknodes %s", FS_DM))
		return -1;
	mkdir(FS_MNT, 0755);
	if (mount("/dev/mapper/" FS_DM, FS_MNT, "ext4", 0, NULL))
		return -1;
	pid = fork();
	if (pid == 0)
		appender_child(a);
	return pid;
}

/* A page of memory shared with the children forked after, or MAP_FAILED. */
static void *shared_page(void)
{
	return mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
}

/* A child that advances *@counter as fast as it can: its pid, or -1. */
static pid_t start_counter(unsigned long *counter)
{
	pid_t pid = fork();

	if (pid == 0) {
		for (;;)
			__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
	}
	return pid;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

/*
 * Kernel lockdown forbids hibernation: snapshot_kernel(2) fails with EPERM.
 * Lockdown cannot be lifted, so this is the last thing the last boot does.
 */
static void check_lockdown(void)
{
	int frz, fd, err;

	run(NULL, 0, "mount -t securityfs none /sys/kernel/security");
	if (run(NULL, 0, "echo integrity > /sys/kernel/security/lockdown")) {
		result(0, "lockdown: cannot enable it");
		return;
	}
	frz = sys_freeze_processes(0);
	errno = 0;
	fd = sys_snapshot_kernel(0, 0);
	err = errno;
	if (fd >= 0)
		close(fd);
	if (frz >= 0)
		close(frz);
	result(fd == -1 && err == EPERM, "under lockdown snapshot_kernel fails with EPERM (%s)",
	       strerror(err));
}

/* Whether @pid is stopped within @seconds. */
static int stops_within(pid_t pid, int seconds)
{
	double deadline = now_s() + seconds;

	while (proc_state(pid) != 'T') {
		if (now_s() > deadline)
			return 0;
		usleep(10000);
	}
	return 1;
}

/*
 * The first boot after the atomic point: releases the freeze and lets the
 * appender write 1,000 more records (epoch 1), which must go to the
 * dm-hibsnap store and never reach the disk the next boot resumes with.
 */
static void run_on_after_atomic_point(struct appender *a, pid_t appender, int frz)
{
	unsigned long at = __atomic_load_n(&a->done, __ATOMIC_ACQUIRE);
	char status[256] = "";
	int ok;

	__atomic_store_n(&a->epoch, 1, __ATOMIC_RELAXED);
	close(frz);
	ok = reaches(&a->done, at + 1000, 60);
	kill(appender, SIGSTOP);
	ok = ok && !run(status, sizeof(status), "dmsetup status " FS_DM) &&
	     strstr(status, " snapshot store ") && !strstr(status, "diverted 0 ");
	status[strcspn(status, "\n")] = 0;
	result(ok,
	       "after the release the appender wrote %lu records past the %lu of the atomic point, into the dm-hibsnap store: %s",
	       __atomic_load_n(&a->done, __ATOMIC_ACQUIRE) - at, at, status);
}

/*
 * Whether e2fsck -fn finds the filesystem on @fs_dev, the origin of FS_DM,
 * clean while it is mounted, and the kernel logged no ext4 error: the device
 * is suspended (which freezes the filesystem) and the origin's own page
 * cache, which may be older than the disk, is dropped.
 */
static int fsck_origin(const char *fs_dev)
{
	char out[2048];
	int rc;

	rc = run(out, sizeof(out), "(%s && %s && /usr/sbin/e2fsck -fn %s; rc=$?; %s && exit $rc)",
		 "dmsetup suspend " FS_DM, "echo 1 >/proc/sys/vm/drop_caches", fs_dev,
		 "dmsetup resume " FS_DM);
	if (rc)
		print_lines(out);
	return !rc && run(NULL, 0, "dmesg | grep -q 'EXT4-fs error'");
}

/*
 * The restored system, the freeze still held: the file on the disk holds the
 * records written before the atomic point, and e2fsck finds the filesystem
 * clean (the device suspended with it frozen, as the snapshot did). Returns
 * the number of records on the disk, or -1.
 */
static long check_disk_after_resume(struct appender *a, pid_t appender, const char *fs_dev)
{
	unsigned long at = __atomic_load_n(&a->done, __ATOMIC_ACQUIRE);
	long k;

	/* A write asleep at the atomic point completes now, then it stops. */
	if (!stops_within(appender, 10))
		printf("# appender not stopped: '%c'\n", proc_state(appender));
	k = disk_records(-1);
	/* At the atomic point the last write(2) may have been done or in flight. */
	result(k == (long)at || k == (long)at + 1,
	       "on the disk after resume: %ld records, all of before the atomic point, where the appender had written %lu",
	       k, at);
	result(fsck_origin(fs_dev), "e2fsck -fn %s clean after resume, no ext4 error logged",
	       fs_dev);
	return k;
}

/*
 * Unmounts FS_MNT, its users reaped. The last reference to a file mapped by a
 * process can be dropped after the process is reaped (by whoever held its mm
 * last, and then from a workqueue), so EBUSY is retried for up to 10 s, and
 * said; then what still uses the filesystem is printed. Returns 0 or -1.
 */
static int unmount_fs(void)
{
	double start = now_s();
	char out[2048];

	while (umount(FS_MNT)) {
		if (errno != EBUSY || now_s() > start + 10) {
			printf("# umount %s: %s after %.1f s; its users:\n", FS_MNT,
			       strerror(errno), now_s() - start);
			run(out, sizeof(out),
			    "ls -l /proc/[0-9]*/fd /proc/[0-9]*/cwd | grep '%s/'; %s",
			    FS_MNT, "grep -l ' " FS_MNT "/' /proc/[0-9]*/maps");
			print_lines(out);
			return -1;
		}
		usleep(10000);
	}
	if (now_s() > start + 0.01)
		printf("# umount %s: busy for %.2f s after its last user was reaped\n", FS_MNT,
		       now_s() - start);
	return 0;
}

/* Runs the shell command @cmd; prints its output if it fails. Returns its status. */
static int run_said(const char *cmd)
{
	char out[2048];
	int rc = run(out, sizeof(out), "%s", cmd);

	if (rc) {
		printf("# %s: exit %d\n", cmd, rc);
		print_lines(out);
	}
	return rc;
}

/* Ends the appender, then unmounts the filesystem, checks it and removes FS_DM. */
static void stop_appender(pid_t appender)
{
	kill(appender, SIGKILL);
	waitpid(appender, NULL, 0);
	result(!unmount_fs() && !run_said("/usr/sbin/e2fsck -fn /dev/mapper/" FS_DM) &&
	       !run_said("dmsetup remove " FS_DM),
	       "unmounted: e2fsck -fn clean, " FS_DM " removed");
}

/*
 * The restored system, the freeze released: the appender goes on from where
 * it was at the atomic point, so the file must hold exactly its records, in
 * order, those after the resume of epoch 2 and none from the first boot's
 * run after the atomic point (epoch 1). Then the filesystem is unmounted and
 * checked again.
 */
static void check_appender_goes_on(struct appender *a, pid_t appender, long on_disk)
{
	unsigned long done;
	long k = -1;

	if (reaches(&a->done, on_disk + 500, 60)) {
		__atomic_store_n(&a->pause, 1, __ATOMIC_RELEASE);
		if (reaches(&a->paused, 1, 30))
			k = disk_records(on_disk);
	}
	done = __atomic_load_n(&a->done, __ATOMIC_ACQUIRE);
	result(on_disk >= 0 && k == (long)done,
	       "the appender went on: the file holds exactly its %lu records, %lu of them from after the resume, none from the first boot's run on",
	       done, done - on_disk);
	stop_appender(appender);
}

static int save(const char *image_dev, const char *swap_dev, const char *fs_dev)
{
	unsigned long *counter = shared_page();
	struct appender *a = shared_page();
	struct pattern small = { .mb = SWAPPED_MB, .pageout = 1, .seed = 7 };
	struct pattern large = { .mb = LARGE_MB, .pageout = 0, .seed = 11 };
	struct hibsnap_geometry g;
	struct header hdr = { HDR_MAGIC, 0 };
	unsigned long before;
	long swapped, rss, total, on_disk;
	int frz, fd, dev;
	double deadline;
	char *buf, rss_s[64];
	ssize_t n;
	pid_t cnt, appender;

	printf("TAP version 13\n1..%d\n", NR_TESTS);
	fflush(stdout);
	if (run(NULL, 0, "mkswap %s && swapon %s", swap_dev, swap_dev)) {
		result(0, "swap on %s", swap_dev);
		return 1;
	}
	if (counter == MAP_FAILED || a == MAP_FAILED || start_pattern(&small) ||
	    start_pattern(&large))
		return 1;
	cnt = start_counter(counter);
	if (cnt < 0)
		return 1;
	appender = start_appender(fs_dev, a);
	if (appender < 0) {
		result(0, "ext4 on dm-hibsnap over %s, and the appender: %s", fs_dev,
		       strerror(errno));
		return 1;
	}
	swapped = vm_swap_kb(small.pid);
	result(swapped > 0, "pattern child has %ld kB in swap", swapped);
	/* The large image: most of RAM is user memory, none of it in swap. */
	rss = proc_status(large.pid, "VmRSS:", rss_s, sizeof(rss_s)) ? -1 : strtol(rss_s, NULL, 10);
	total = meminfo_kb("MemTotal");
	result(rss >= (long)(LARGE_MB << 10) * 95 / 100 && vm_swap_kb(large.pid) == 0,
	       "large pattern child: %ld kB resident (%ld%% of MemTotal), none in swap",
	       rss, total > 0 ? rss * 100 / total : -1);
	if (!reaches(&a->done, 2000, 60)) {
		result(0, "the appender wrote %lu records", a->done);
		return 1;
	}

	frz = sys_freeze_processes(0);
	if (frz < 0) {
		result(0, "freeze_processes: %s", strerror(errno));
		return 1;
	}
	fd = sys_snapshot_kernel(0, 0);
	if (fd < 0) {
		result(0, "snapshot_kernel: %s", strerror(errno));
		return 1;
	}
	if (ioctl(fd, HIBSNAP_IOC_GEOMETRY, &g)) {
		result(0, "geometry: %s", strerror(errno));
		return 1;
	}
	if (!(g.flags & HIBSNAP_GEOMETRY_RESUMED)) {
		/*
		 * Boot 1: the system runs on, then the image is written and
		 * the machine powered off, the image still open.
		 */
		run_on_after_atomic_point(a, appender, frz);
		kill(cnt, SIGSTOP);
		dev = open(image_dev, O_WRONLY | O_CLOEXEC);
		buf = malloc(CHUNK);
		if (dev < 0 || !buf)
			return 1;
		hdr.bytes = g.image_bytes;
		memset(buf, 0, PAGE);
		memcpy(buf, &hdr, sizeof(hdr));
		if (write_all(dev, buf, PAGE))
			return 1;
		while ((n = read(fd, buf, CHUNK)) > 0)
			if (write_all(dev, buf, n))
				return 1;
		if (n < 0 || fsync(dev))
			return 1;
		result(1, "image written: %llu bytes (copied %llu, streamed %llu, zero %llu pages)",
		       g.image_bytes, g.copied_pages, g.streamed_pages, g.zero_pages);
		printf("# powering off; the next boot restores the image\n");
		fflush(stdout);
		sync();
		reboot(RB_POWER_OFF);
		return 1;
	}

	/*
	 * The restored system: the same call returned again. Tests 3 and 4
	 * (the run after the atomic point, the image written) ran in the
	 * first boot only.
	 */
	nr += 2;
	result(1, "snapshot_kernel returned in the restored system (resumed)");
	on_disk = check_disk_after_resume(a, appender, fs_dev);
	__atomic_store_n(&a->epoch, 2, __ATOMIC_RELAXED);
	close(fd);
	close(frz);
	before = __atomic_load_n(counter, __ATOMIC_RELAXED);
	deadline = now_s() + 10;
	while (__atomic_load_n(counter, __ATOMIC_RELAXED) == before && now_s() < deadline)
		;
	result(__atomic_load_n(counter, __ATOMIC_RELAXED) != before,
	       "counter process runs on from %lu", before);
	result(check_pattern(&small),
	       "pattern child's %lu MiB intact, the swapped-out half read back from swap",
	       SWAPPED_MB);
	result(check_pattern(&large), "large pattern child's %lu MiB intact, all from the image",
	       LARGE_MB);
	result(vm_swap_kb(small.pid) < swapped, "swap-in happened: VmSwap %ld -> %ld kB",
	       swapped, vm_swap_kb(small.pid));
	result(run(NULL, 0, "swapoff %s", swap_dev) == 0, "swap still valid: swapoff %s",
	       swap_dev);
	check_appender_goes_on(a, appender, on_disk);
	kill(small.pid, SIGKILL);
	kill(large.pid, SIGKILL);
	kill(cnt, SIGKILL);
	waitpid(small.pid, NULL, 0);
	waitpid(large.pid, NULL, 0);
	waitpid(cnt, NULL, 0);
	check_lockdown();
	return failed ? 1 : 0;
}

/*
 * The round trip through the hibsnap tool (tools/power/hibsnap), three
 * cycles in a row; the key is the initramfs's.
 */
#define TOOL "/bin/hibsnap"
#define TOOL_KEY "/etc/hibsnap.key"
#define TOOL_LARGE_MB 256UL
#define TOOL_CYCLES 3
/*
 * The memory cycle: at least this share of MemTotal in user memory of every
 * kind. The image is then about 83% of MemTotal, and the next boot's
 * kernel, initramfs and loader need the rest (hibsnap hibernate refuses an
 * image that leaves them less than --loader-reserve, 128 MiB).
 */
#define TOOL_MEM_PERCENT 75
/* Results 1 to 23, without a plan: the caller prints it with its own results. */

/*
 * Runs `hibsnap hibernate --image @target` (with --no-poweroff if @hold: the
 * harness switches the machine off, as a hypervisor would), which freezes
 * this process too: its exit status, in the restored system (or at once if
 * it failed).
 */
static int tool_hibernate(const char *target, int hold)
{
	const char *flag = hold ? "--no-poweroff" : "--level=1";
	int status;
	pid_t pid;

	printf("# cycle: %s hibernate --image %s --key-file %s %s\n", TOOL, target, TOOL_KEY,
	       flag);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		execl(TOOL, "hibsnap", "hibernate", "--image", target, "--key-file", TOOL_KEY, flag,
		      (char *)NULL);
		_exit(127);
	}
	if (pid < 0)
		return -1;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Waits up to @seconds for *@v == 0. */
static int drops_to_zero(unsigned long *v, int seconds)
{
	double deadline = now_s() + seconds;

	while (__atomic_load_n(v, __ATOMIC_ACQUIRE)) {
		if (now_s() > deadline)
			return 0;
		usleep(10000);
	}
	return 1;
}

/*
 * After a cycle: the appender parked, the file must hold exactly the records
 * whose write(2) returned, in order, their epochs never going back (none
 * lost, none twice), and the filesystem is clean; then the appender goes on,
 * its records of epoch @cycle.
 */
static void check_file(struct appender *a, int cycle, const char *fs_dev)
{
	unsigned long done = 0;
	long k = -1;

	__atomic_store_n(&a->pause, 1, __ATOMIC_RELEASE);
	if (reaches(&a->paused, 1, 30)) {
		done = __atomic_load_n(&a->done, __ATOMIC_ACQUIRE);
		k = disk_records(ANY_EPOCH);
	}
	result(k >= 0 && k == (long)done,
	       "cycle %d: the file holds exactly the appender's %lu records, in order, none lost or twice",
	       cycle, done);
	result(fsck_origin(fs_dev), "cycle %d: e2fsck -fn %s clean, no ext4 error logged", cycle,
	       fs_dev);
	__atomic_store_n(&a->epoch, cycle, __ATOMIC_RELAXED);
	__atomic_store_n(&a->pause, 0, __ATOMIC_RELEASE);
	if (!drops_to_zero(&a->paused, 30))
		printf("# the appender did not go on\n");
}

/* Whether the counter moves within 10 s. */
static int counter_moves(unsigned long *counter)
{
	unsigned long before = __atomic_load_n(counter, __ATOMIC_RELAXED);
	double deadline = now_s() + 10;

	while (__atomic_load_n(counter, __ATOMIC_RELAXED) == before && now_s() < deadline)
		;
	return __atomic_load_n(counter, __ATOMIC_RELAXED) != before;
}

/*
 * Before the memory cycle: swap off, and a third pattern so that the
 * patterns hold at least TOOL_MEM_PERCENT of MemTotal; then mainline
 * hibernation tries the same. Returns the MiB in patterns.
 */
static size_t fill_memory(struct pattern *more, size_t have_mb, const char *swap_dev,
			  int *mainline)
{
	long total = meminfo_kb("MemTotal");
	size_t want = total * TOOL_MEM_PERCENT / 100 / 1024 + 1;
	long anon;

	if (run(NULL, 0, "swapoff %s", swap_dev))
		printf("# swapoff %s failed\n", swap_dev);
	more->mb = want > have_mb ? want - have_mb : 1;
	if (start_pattern(more))
		return 0;
	anon = meminfo_kb("AnonPages");
	result(meminfo_kb("SwapTotal") == 0 &&
	       (long)(have_mb + more->mb) * 1024 * 100 >= total * TOOL_MEM_PERCENT,
	       "memory cycle: %zu MiB in patterns, %ld%% of MemTotal (%ld MiB; AnonPages %ld MiB, Shmem %ld MiB), no swap",
	       have_mb + more->mb, (long)((have_mb + more->mb) * 1024 * 100 / total), total >> 10,
	       anon >> 10, meminfo_kb("Shmem") >> 10);
	*mainline = devsnapshot_create();
	result(*mainline == -ENOMEM,
	       "memory cycle: mainline hibernation (/dev/snapshot SNAPSHOT_CREATE_IMAGE) in this state fails: %s",
	       strerror(-*mainline));
	return have_mb + more->mb;
}

/* Kills and reaps the @n children in @pids (0: none). */
static void kill_children(const pid_t *pids, int n)
{
	while (n--)
		if (pids[n] > 0)
			kill(pids[n], SIGKILL);
	while (wait(NULL) > 0)
		;
}

static int tool_cycles(const char *swap_dev, const char *fs_dev, char **targets)
{
	unsigned long *counter = shared_page();
	struct appender *a = shared_page();
	struct pattern small = { .mb = SWAPPED_MB, .pageout = 1, .seed = 7 };
	struct pattern large = { .mb = TOOL_LARGE_MB, .pageout = 0, .seed = 11 };
	struct pattern more = { .pageout = 0, .mixed = 1, .seed = 13 };
	size_t mem_mb = 0;
	int c, rc, ok = 0, mainline = 0;
	unsigned long at;
	long swapped, k;
	pid_t cnt = 0, appender = 0;

	if (run(NULL, 0, "mkswap %s && swapon %s", swap_dev, swap_dev) ||
	    counter == MAP_FAILED || a == MAP_FAILED || start_pattern(&small) ||
	    start_pattern(&large)) {
		result(0, "swap on %s, and the pattern children", swap_dev);
		goto out;
	}
	cnt = start_counter(counter);
	appender = start_appender(fs_dev, a);
	if (cnt < 0 || appender < 0 || !reaches(&a->done, 2000, 60)) {
		result(0, "a counter, and ext4 on dm-hibsnap over %s with the appender", fs_dev);
		goto out;
	}
	swapped = vm_swap_kb(small.pid);
	result(swapped > 0, "pattern child has %ld kB in swap", swapped);
	result(vm_swap_kb(large.pid) == 0, "large pattern child: %lu MiB, none in swap",
	       TOOL_LARGE_MB);
	for (c = 1; c <= TOOL_CYCLES; c++) {
		if (c == TOOL_CYCLES)
			mem_mb = fill_memory(&more, SWAPPED_MB + TOOL_LARGE_MB, swap_dev,
					     &mainline);
		rc = tool_hibernate(targets[c - 1], c == 2);
		result(rc == 0,
		       "cycle %d: hibsnap hibernate --image %s%s returned %d in the restored system",
		       c, targets[c - 1],
		       c == 2 ? " --no-poweroff (switched off by the harness)" : "", rc);
		if (rc)
			goto out;
		result(counter_moves(counter), "cycle %d: the counter runs on", c);
		ok = check_pattern(&small) && check_pattern(&large) &&
		     (c < TOOL_CYCLES || check_pattern(&more));
		result(ok, "cycle %d: every pattern intact (%lu MiB%s)", c,
		       c < TOOL_CYCLES ? SWAPPED_MB + TOOL_LARGE_MB : mem_mb,
		       c == 1 ? ", the swapped-out half read back from swap" : "");
		if (c == 1)
			result(vm_swap_kb(small.pid) < swapped,
			       "swap-in happened: VmSwap %ld -> %ld kB", swapped,
			       vm_swap_kb(small.pid));
		check_file(a, c, fs_dev);
	}
	result(ok && mainline == -ENOMEM,
	       "memory cycle, side by side, %zu MiB of user memory (private and shared anonymous, tmpfs, SysV shm, memfd, ext4 page cache) and no swap: mainline hibernation: %s; hibsnap: imaged, written, restored, every byte intact",
	       mem_mb, strerror(-mainline));
	at = __atomic_load_n(&a->done, __ATOMIC_ACQUIRE);
	k = -1;
	if (reaches(&a->done, at + 500, 60)) {
		__atomic_store_n(&a->pause, 1, __ATOMIC_RELEASE);
		if (reaches(&a->paused, 1, 30))
			k = disk_records(ANY_EPOCH);
	}
	result(k == (long)__atomic_load_n(&a->done, __ATOMIC_ACQUIRE),
	       "after the last cycle the appender went on: the file holds exactly its %ld records",
	       k);
	/* Its ext4 file is mapped: the filesystem is unmounted next. */
	kill(more.pid, SIGKILL);
	waitpid(more.pid, NULL, 0);
	more.pid = 0;
	stop_appender(appender);
	appender = 0;
out:
	/* Whatever failed, the memory goes back for what runs after. */
	kill_children((pid_t[]){ small.pid, large.pid, more.pid, cnt, appender }, 5);
	return failed ? 1 : 0;
}

static int load(const char *image_dev)
{
	int dev = open(image_dev, O_RDONLY | O_CLOEXEC), snap;
	struct header hdr;
	uint64_t left;
	char *buf = malloc(CHUNK);
	ssize_t n;

	if (dev < 0 || !buf || pread(dev, &hdr, sizeof(hdr), 0) != sizeof(hdr) ||
	    memcmp(hdr.magic, HDR_MAGIC, sizeof(HDR_MAGIC))) {
		printf("HIBSNAP-LOAD: no image on %s\n", image_dev);
		return 1;
	}
	snap = open("/dev/snapshot", O_WRONLY | O_CLOEXEC);
	if (snap < 0 || ioctl(snap, SNAPSHOT_FREEZE)) {
		printf("HIBSNAP-LOAD: /dev/snapshot: %s\n", strerror(errno));
		return 1;
	}
	lseek(dev, PAGE, SEEK_SET);
	for (left = hdr.bytes; left; left -= n) {
		n = read(dev, buf, left < CHUNK ? left : CHUNK);
		if (n <= 0 || write_all(snap, buf, n)) {
			printf("HIBSNAP-LOAD: feeding the loader: %s\n", strerror(errno));
			return 1;
		}
	}
	printf("HIBSNAP-LOAD: %llu bytes loaded, restoring\n", (unsigned long long)hdr.bytes);
	fflush(stdout);
	ioctl(snap, SNAPSHOT_ATOMIC_RESTORE);
	printf("HIBSNAP-LOAD: SNAPSHOT_ATOMIC_RESTORE: %s\n", strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 5 && !strcmp(argv[1], "save"))
		return save(argv[2], argv[3], argv[4]);
	if (argc == 3 && !strcmp(argv[1], "load"))
		return load(argv[2]);
	if (argc == 4 + TOOL_CYCLES && !strcmp(argv[1], "tool"))
		return tool_cycles(argv[2], argv[3], argv + 4);
	fprintf(stderr,
		"usage: %s save IMAGE_DEV SWAP_DEV FS_DEV | load IMAGE_DEV | tool SWAP_DEV FS_DEV TARGET TARGET TARGET\n",
		argv[0]);
	return 2;
}
