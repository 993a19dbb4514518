// SPDX-License-Identifier: GPL-2.0
/*
 * Real programs through freezes and snapshots: Debian's stress-ng and fio,
 * each with its own verification (stress-ng --verify, fio verify=crc32c),
 * run while freeze_processes(2) and snapshot_kernel(2) come and go. fio
 * writes to a dm-hibsnap device, so its writes made while an image is open go
 * to the snapshot store and must be merged back at close without one lost.
 *
 * Both tools must end on their own (stress-ng's --timeout is an alarm: it
 * needs POSIX timers), exit 0, and report no verification error; the errors
 * are counted and printed.
 *
 * The tools and their libraries live in /opt/load of the test initramfs
 * (harness/inner/run); /init removes them after this test to give their
 * memory back to the tests after it.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/hibsnap.h>

#include "../kselftest_harness.h"
#include "hibsnap_util.h"

#define LOAD_ORIGIN "/dev/ram3"
#define LOAD_NAME "hsload"
#define LOAD_DEV "/dev/mapper/" LOAD_NAME
/* 32 MiB of the 64 MiB RAM disk: fio uses 16 MiB of it. */
#define LOAD_SECTORS 65536
#define LOAD_ENV "LD_LIBRARY_PATH=/opt/load/lib PATH=/opt/load/bin:$PATH "
#define CYCLES 4
#define CHUNK (4UL << 20)

/*
 * Both run for RUN_S seconds, long enough for every cycle to find them at
 * work (the test checks that it does); fio verifies what it wrote every 256
 * blocks, as it goes.
 */
#define RUN_S "30"
#define FIO_CMD LOAD_ENV "exec fio --name=hsload --filename=" LOAD_DEV \
	" --ioengine=libaio --iodepth=8 --direct=1 --rw=randwrite --bs=4k --size=16m" \
	" --time_based --runtime=" RUN_S " --verify=crc32c --verify_backlog=256 --verify_fatal=1"
#define STRESS_CMD LOAD_ENV "exec stress-ng --vm 1 --vm-bytes 32m --mmap 1 --mmap-bytes 16m" \
	" --timer 1 --verify --timeout " RUN_S "s --metrics-brief --temp-path /tmp"

/* Start `sh -c CMD` with its output in LOG. */
static pid_t spawn(const char *cmd, const char *log)
{
	pid_t pid = fork();
	int fd;

	if (pid)
		return pid;
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		_exit(127);
	execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	_exit(127);
}

/* The exit status of PID within TIMEOUT seconds; -1 (and killed) if none. */
static int finish(pid_t pid, double timeout)
{
	double deadline = now_s() + timeout;
	int status;

	while (now_s() < deadline) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (r < 0)
			return -1;
		usleep(100000);
	}
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

/*
 * Lines of LOG that contain WHAT and one of the words in ALSO (or WHAT alone
 * when ALSO is NULL), each printed as a diagnostic when SHOW.
 */
static int count_lines(const char *log, const char *what, const char *const *also, int show)
{
	char line[512];
	int n = 0;
	FILE *f = fopen(log, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		const char *const *a = also;
		int hit = !!strcasestr(line, what);

		if (hit && a) {
			hit = 0;
			for (; *a; a++)
				hit |= !!strcasestr(line, *a);
		}
		if (hit) {
			n++;
			if (show)
				ksft_print_msg("%s", line);
		}
	}
	fclose(f);
	return n;
}

/* fio's per-job "err=" figure, or -1 if fio printed none. */
static int fio_job_errors(const char *log)
{
	char line[512], *p;
	int err = -1;
	FILE *f = fopen(log, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		p = strstr(line, "(groupid=");
		p = p ? strstr(p, "err=") : NULL;
		if (p)
			err = atoi(p + 4);
	}
	fclose(f);
	return err;
}

/* Read the whole image; its size, or -1. */
static long long read_image(int fd)
{
	static char buf[CHUNK];
	long long total = 0;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += n;
	return n < 0 ? -1 : total;
}

#define KHUGEPAGED "/sys/kernel/mm/transparent_hugepage/khugepaged/"
#define NR_KNOBS 3

/* khugepaged's knobs the memory test turns up: a pass every 100 ms, of 64 Ki PTEs. */
static const char *const knob[NR_KNOBS] = {
	"scan_sleep_millisecs", "alloc_sleep_millisecs", "pages_to_scan" };
static const char *const knob_busy[NR_KNOBS] = { "100", "0", "65536" };

/* Writes khugepaged's knob @i; 0 or -1. */
static int knob_write(int i, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), KHUGEPAGED "%s", knob[i]);
	return write_str(path, val);
}

FIXTURE(load) {
	int dm_ready;
	int knobs_saved;
	char knob_was[NR_KNOBS][32];
};

FIXTURE_SETUP(load)
{
	self->dm_ready = !run(NULL, 0,
			      "dmsetup create --noudevsync %s --table '0 %d hibsnap %s' && dmsetup mknodes --noudevsync %s",
			      LOAD_NAME, LOAD_SECTORS, LOAD_ORIGIN, LOAD_NAME);
	ASSERT_TRUE(self->dm_ready);
}

FIXTURE_TEARDOWN(load)
{
	__u64 range[2] = { 0, (__u64)LOAD_SECTORS * 512 };
	int fd;

	if (self->dm_ready)
		run(NULL, 0, "dmsetup remove --noudevsync " LOAD_NAME);
	for (int i = 0; i < self->knobs_saved; i++)
		knob_write(i, self->knob_was[i]);
	/* Give the RAM disk's pages back to the tests after this one. */
	fd = open(LOAD_ORIGIN, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		ioctl(fd, BLKDISCARD, range);
		close(fd);
	}
}

TEST_F_TIMEOUT(load, stress_ng_and_fio_verify_through_freezes_and_snapshots, 300)
{
	static const char *const fio_bad[] = { "bad", "fail", "mismatch", NULL };
	const char *fio_log = "/tmp/load-fio.log", *stress_log = "/tmp/load-stress.log";
	int fio_rc, stress_rc, stress_errors, fio_errors, fio_err, i;
	struct hibsnap_geometry g;
	pid_t fio, stress;

	fio = spawn(FIO_CMD, fio_log);
	stress = spawn(STRESS_CMD, stress_log);
	ASSERT_GT(fio, 0);
	ASSERT_GT(stress, 0);

	for (i = 0; i < CYCLES; i++) {
		long long bytes;
		int frz, fd;

		/* Let both work between the cycles; both must still be at work. */
		usleep(1500000);
		ASSERT_EQ(0, waitpid(fio, NULL, WNOHANG)) TH_LOG("fio ended before cycle %d", i);
		ASSERT_EQ(0, waitpid(stress, NULL, WNOHANG))
			TH_LOG("stress-ng ended before cycle %d", i);
		frz = sys_freeze_processes(0);
		ASSERT_LE(0, frz) TH_LOG("freeze %d: %s", i, strerror(errno));
		/* Both tools are stopped like everything else. */
		EXPECT_EQ('T', proc_state(fio)) TH_LOG("cycle %d", i);
		EXPECT_EQ('T', proc_state(stress)) TH_LOG("cycle %d", i);
		fd = sys_snapshot_kernel(0, 0);
		ASSERT_LE(0, fd) TH_LOG("snapshot %d: %s", i, strerror(errno));
		ASSERT_EQ(0, ioctl(fd, HIBSNAP_IOC_GEOMETRY, &g));
		bytes = read_image(fd);
		EXPECT_EQ((long long)g.image_bytes, bytes);
		ksft_print_msg("cycle %d: image of %lld bytes read\n", i, bytes);
		close(fd);
		close(frz);
	}

	fio_rc = finish(fio, 120);
	stress_rc = finish(stress, 120);
	count_lines(stress_log, "metrc:", NULL, 1);
	count_lines(fio_log, "READ:", NULL, 1);
	count_lines(fio_log, "WRITE:", NULL, 1);
	stress_errors = count_lines(stress_log, "stress-ng: fail:", NULL, 1) +
			count_lines(stress_log, "stress-ng: error:", NULL, 1);
	fio_errors = count_lines(fio_log, "verify", fio_bad, 1);
	fio_err = fio_job_errors(fio_log);
	ksft_print_msg("stress-ng: exit %d, %d verification errors\n", stress_rc, stress_errors);
	ksft_print_msg("fio: exit %d, %d verification errors, job err=%d\n",
		       fio_rc, fio_errors, fio_err);
	EXPECT_EQ(0, stress_rc);
	EXPECT_EQ(0, stress_errors);
	EXPECT_EQ(0, fio_rc);
	EXPECT_EQ(0, fio_errors);
	EXPECT_EQ(0, fio_err);
}

/*
 * stress-ng's memory stressors, each with --verify, through five freeze +
 * snapshot cycles: anonymous memory (vm), a shared file mapping on tmpfs
 * synced with msync (msync), POSIX shared memory (shm) and memfd (memfd).
 * Their shared memory is kept in place and copied before a write, so no
 * cycle may fail for memory (the reserve counts kernel memory only), and no
 * stressor may see a wrong byte. Every other cycle releases the freeze as
 * soon as the image is taken and reads it while they run: their writes then
 * copy pages first, and the image is not dropped. Each cycle prints the
 * kernel's estimate of the copy (the reserve's log line) next to what the
 * atomic point copied. khugepaged scans every 100 ms meanwhile, and must
 * collapse something: a collapse between the protection and the atomic
 * point would map a new THP writable, copied at the atomic point and
 * missing from the estimate.
 */
#define MEM_CYCLES 5
#define MEM_RUN_S "45"
#define MEM_CMD LOAD_ENV "exec stress-ng --vm 2 --vm-bytes 192m --msync 1 --msync-bytes 64m" \
	" --shm 1 --shm-bytes 16m --shm-objs 4 --memfd 1 --memfd-bytes 64m --memfd-fds 16" \
	" --verify" \
	" --timeout " MEM_RUN_S "s --metrics-brief --temp-path /tmp"

#define MEM_CYCLE_FMT "cycle %d%s: %lld MiB read; kernel pages estimated %ld, copied %llu (of them shared written %llu, exclusive %llu) and %ld all-zero; in place %llu (copy-on-write %llu, page cache %llu, shared %llu); copies before a write %llu\n"
#define MEM_END_FMT "stress-ng: exit %d, %d verification errors; %d of %d cycles failed with ENOMEM\n"

/*
 * The number after @key in the last kernel log line with @line, or -1: the
 * kernel pages the reserve counted ("hibsnap: reserved", "(kernel "), the
 * all-zero ones the atomic point found ("hibsnap: snapshot:", "zero (").
 */
static long kmsg_number(const char *line, const char *key)
{
	char out[512], *at;
	long n = -1;

	if (!run(out, sizeof(out), "dmesg | grep '%s' | tail -1", line)) {
		at = strstr(out, key);
		if (at)
			sscanf(at + strlen(key), "%ld", &n);
	}
	return n;
}

TEST_F_TIMEOUT(load, stress_ng_memory_stressors_verify_through_snapshots, 300)
{
	const char *log = "/tmp/load-mem.log";
	int rc, errors, i, nomem = 0;
	struct hibsnap_geometry g;
	long collapsed;
	pid_t stress;

	/* POSIX shared memory lives on /dev/shm. */
	mkdir("/dev/shm", 01777);
	ASSERT_EQ(0, run(NULL, 0, "%s || mount -t tmpfs shm /dev/shm",
			 "grep -q ' /dev/shm ' /proc/mounts"));
	/*
	 * khugepaged busy throughout: a collapse between the protection and
	 * the atomic point would map a new THP writable, to be copied, past
	 * the reserve's count (the kernel refuses them meanwhile).
	 */
	for (i = 0; i < NR_KNOBS; i++) {
		ASSERT_EQ(0, run(self->knob_was[i], sizeof(self->knob_was[i]),
				 "cat " KHUGEPAGED "%s", knob[i]));
		self->knobs_saved = i + 1;
		ASSERT_EQ(0, knob_write(i, knob_busy[i]));
	}
	collapsed = proc_number("/proc/vmstat", "thp_collapse_alloc", ' ');
	stress = spawn(MEM_CMD, log);
	ASSERT_GT(stress, 0);

	for (i = 0; i < MEM_CYCLES; i++) {
		long estimate, zero;
		long long bytes;
		int frz, fd;

		usleep(1500000);
		ASSERT_EQ(0, waitpid(stress, NULL, WNOHANG))
			TH_LOG("stress-ng ended before cycle %d", i);
		frz = sys_freeze_processes(0);
		ASSERT_LE(0, frz) TH_LOG("freeze %d: %s", i, strerror(errno));
		EXPECT_EQ('T', proc_state(stress)) TH_LOG("cycle %d", i);
		fd = sys_snapshot_kernel(0, 0);
		if (fd < 0) {
			nomem += errno == ENOMEM;
			ksft_print_msg("cycle %d: snapshot_kernel: %s\n", i, strerror(errno));
			close(frz);
			continue;
		}
		if (i % 2)
			close(frz);
		ASSERT_EQ(0, ioctl(fd, HIBSNAP_IOC_GEOMETRY, &g));
		bytes = read_image(fd);
		EXPECT_EQ((long long)g.image_bytes, bytes);
		ASSERT_EQ(0, ioctl(fd, HIBSNAP_IOC_GEOMETRY, &g));
		EXPECT_EQ(0U, g.flags) TH_LOG("cycle %d", i);
		estimate = kmsg_number("hibsnap: reserved", "(kernel ");
		zero = kmsg_number("hibsnap: snapshot:", "zero (");
		ksft_print_msg(MEM_CYCLE_FMT, i, i % 2 ? " (read while all runs)" : "",
			       bytes >> 20, estimate, g.copied_pages, g.written_pages,
			       g.exclusive_pages, zero,
			       g.streamed_pages, g.cow_pages, g.denied_pages, g.shared_pages,
			       g.cbw_pages);
		/*
		 * Safely close: the estimate counts the kernel pages to copy
		 * and those all-zero at the atomic point (not known before
		 * it). Short by at most 2% (the reserve adds an eighth), above
		 * by at most a fifth (pages off the LRU lists while counted
		 * are counted as kernel memory).
		 */
		EXPECT_LE(((long)g.copied_pages + zero) * 98, estimate * 100) TH_LOG("cycle %d", i);
		EXPECT_LE(estimate * 5, ((long)g.copied_pages + zero) * 6) TH_LOG("cycle %d", i);
		if (i % 2)
			EXPECT_LT(0ULL, g.cbw_pages)
				TH_LOG("cycle %d: no write while it was read", i);
		close(fd);
		if (!(i % 2))
			close(frz);
	}

	rc = finish(stress, 120);
	collapsed = proc_number("/proc/vmstat", "thp_collapse_alloc", ' ') - collapsed;
	ksft_print_msg("khugepaged: %ld huge pages collapsed during the run\n", collapsed);
	EXPECT_LT(0, collapsed) TH_LOG("khugepaged collapsed nothing: not exercised");
	count_lines(log, "stress-ng", NULL, 1);
	errors = count_lines(log, "stress-ng: fail:", NULL, 0) +
		 count_lines(log, "stress-ng: error:", NULL, 0);
	ksft_print_msg(MEM_END_FMT, rc, errors, nomem, MEM_CYCLES);
	EXPECT_EQ(0, nomem);
	EXPECT_EQ(0, rc);
	EXPECT_EQ(0, errors);
}

TEST_HARNESS_MAIN
