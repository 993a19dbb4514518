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

FIXTURE(load) {
	int dm_ready;
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

TEST_HARNESS_MAIN
