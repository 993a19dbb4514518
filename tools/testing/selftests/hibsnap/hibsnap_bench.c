// SPDX-License-Identifier: GPL-2.0
/*
 * The guest side of `harness/hibsnap bench`: hibsnap and mainline
 * hibernation side by side on the same workloads, in the same boot. Prints
 * one "BENCH" line of key=value pairs per measurement; the harness stamps
 * each line with the host's clock, and harness/inner/bench.py makes the
 * table, the plot and the verdicts. Not a test: it asserts nothing.
 *
 *   hibsnap_bench memcpy MIB REPS
 *	the VM's memcpy bandwidth over MIB MiB
 *   hibsnap_bench mem MIB REPS
 *	a child holding MIB MiB of anonymous memory (random bytes); each
 *	repetition takes an image with freeze_processes(2) and
 *	snapshot_kernel(2) and reads it to its end, then with /dev/snapshot
 *	(SNAPSHOT_FREEZE, SNAPSHOT_CREATE_IMAGE, read()); times each call,
 *	the time with interrupts off (hibsnap's geometry; mainline's from its
 *	"Creating image" and "Image created" debug messages), and the read
 *	rate
 *   hibsnap_bench ceiling STEP
 *	from 30% of MemTotal up to 95% in steps of STEP%: whether each can image a
 *	child holding that much anonymous memory, no swap; stops after both
 *	failed
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <linux/hibsnap.h>
#include <linux/suspend_ioctls.h>

#include "hibsnap_util.h"

#define MIB (1024UL * 1024)
#define READ_CHUNK (4UL << 20)

/* Fills @len bytes at @p with pseudo-random bytes (xorshift64), as real data is. */
static void random_fill(void *p, size_t len, uint64_t seed)
{
	uint64_t *w = p, x = seed | 1;
	size_t i;

	for (i = 0; i < len / sizeof(*w); i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
}

/* A child holding @mib MiB of random anonymous memory: its pid once filled, or -1. */
static pid_t hold_memory(size_t mib)
{
	int ready[2];
	char c;
	pid_t pid;

	if (pipe(ready))
		return -1;
	pid = fork();
	if (pid == 0) {
		void *m = mmap(NULL, mib * MIB, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED)
			_exit(1);
		random_fill(m, mib * MIB, mib);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	if (pid < 0 || read(ready[0], &c, 1) != 1) {
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
		pid = -1;
	}
	close(ready[0]);
	return pid;
}

static void release_memory(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* Reads @fd to its end: the bytes, or -errno; *@secs the time it took. */
static long long read_all(int fd, double *secs)
{
	static char *buf;
	long long total = 0;
	double t0 = now_s();
	ssize_t n;

	if (!buf && posix_memalign((void **)&buf, 4096, READ_CHUNK))
		return -ENOMEM;
	while ((n = read(fd, buf, READ_CHUNK)) > 0)
		total += n;
	*secs = now_s() - t0;
	return n < 0 ? -errno : total;
}

/*
 * Prints "BENCH-MARK @what MIB REP" and waits until the serial port has sent
 * it: the host stamps it as it arrives, so that the time between two marks
 * is the host's, which runs on while the guest's clock stands still
 * (mainline hibernation suspends timekeeping).
 */
static void mark(const char *what, size_t mib, int rep)
{
	printf("BENCH-MARK %s %zu %d\n", what, mib, rep);
	fflush(stdout);
	tcdrain(STDOUT_FILENO);
}

/* The line of one image taken: its times on the guest's clock, size and read rate. */
static void print_image(const char *kind, size_t mib, int rep, double secs, double off_ms,
			long long bytes, double t_read)
{
	printf("BENCH kind=%s mem_mib=%zu rep=%d snapshot_s=%.4f irqs_off_ms=%.2f",
	       kind, mib, rep, secs, off_ms);
	printf(" image_mib=%.1f read_s=%.4f read_mibs=%.1f\n",
	       bytes / (double)MIB, t_read, bytes / (double)MIB / t_read);
}

/* hibsnap: freeze, snapshot_kernel(2), read the image; 0 or -errno. */
static int hibsnap_image(size_t mib, int rep, int print)
{
	struct hibsnap_geometry g = { 0 };
	double t0, t_snap, t_read = 0;
	long long bytes = 0;
	int frz, fd, err = 0;

	if (print)
		mark("hibsnap-begin", mib, rep);
	t0 = now_s();
	frz = sys_freeze_processes(0);
	if (frz < 0)
		return -errno;
	fd = sys_snapshot_kernel(0, 0);
	t_snap = now_s() - t0;
	if (print)
		mark("hibsnap-end", mib, rep);
	if (fd < 0) {
		err = -errno;
	} else {
		if (ioctl(fd, HIBSNAP_IOC_GEOMETRY, &g))
			err = -errno;
		else
			bytes = read_all(fd, &t_read);
		if (bytes < 0)
			err = bytes;
		close(fd);
	}
	close(frz);
	if (print && !err)
		print_image("hibsnap", mib, rep, t_snap, g.atomic_ns / 1e6, bytes, t_read);
	return err;
}

/* The kernel log's time of the last line holding @what, in seconds, or -1. */
static double log_time(const char *what)
{
	char out[256];

	if (run(out, sizeof(out),
		"dmesg | grep -F '%s' | tail -1 | sed 's/^\\[ *\\([0-9.]*\\)\\].*/\\1/'",
		what) || !*out)
		return -1;
	return strtod(out, NULL);
}

/* Mainline: /dev/snapshot's freeze, SNAPSHOT_CREATE_IMAGE, read(); 0 or -errno. */
static int mainline_image(size_t mib, int rep, int print)
{
	double t0, t_create = 0, t_read = 0, off_ms;
	int fd, in_suspend = 0, err = 0;
	long long bytes = 0;

	fd = open("/dev/snapshot", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, SNAPSHOT_FREEZE)) {
		err = -errno;
		close(fd);
		return err;
	}
	if (print)
		mark("mainline-begin", mib, rep);
	t0 = now_s();
	if (ioctl(fd, SNAPSHOT_CREATE_IMAGE, &in_suspend)) {
		err = -errno;
	} else {
		t_create = now_s() - t0;
		if (print)
			mark("mainline-end", mib, rep);
		bytes = read_all(fd, &t_read);
		if (bytes < 0)
			err = bytes;
		ioctl(fd, SNAPSHOT_FREE);
	}
	ioctl(fd, SNAPSHOT_UNFREEZE);
	close(fd);
	off_ms = (log_time("Image created") - log_time("Creating image")) * 1e3;
	if (print && !err)
		print_image("mainline", mib, rep, t_create, off_ms, bytes, t_read);
	return err;
}

static int bench_memcpy(size_t mib, int reps)
{
	char *a = malloc(mib * MIB), *b = malloc(mib * MIB);
	double t0, s;
	int i;

	if (!a || !b)
		return 1;
	random_fill(a, mib * MIB, 1);
	memset(b, 0, mib * MIB);
	for (i = 0; i < reps; i++) {
		t0 = now_s();
		memcpy(b, a, mib * MIB);
		s = now_s() - t0;
		printf("BENCH kind=memcpy mem_mib=%zu rep=%d s=%.4f mibs=%.1f\n",
		       mib, i, s, mib / s);
	}
	free(a);
	free(b);
	return 0;
}

static int bench_mem(size_t mib, int reps)
{
	pid_t holder = hold_memory(mib);
	int i, err;

	if (holder < 0) {
		printf("BENCH kind=error what=hold mem_mib=%zu\n", mib);
		return 1;
	}
	for (i = 0; i < reps; i++) {
		err = hibsnap_image(mib, i, 1);
		if (err)
			printf("BENCH kind=hibsnap mem_mib=%zu rep=%d error=%s\n", mib, i,
			       strerrorname_np(-err));
		err = mainline_image(mib, i, 1);
		if (err)
			printf("BENCH kind=mainline mem_mib=%zu rep=%d error=%s\n", mib, i,
			       strerrorname_np(-err));
	}
	release_memory(holder);
	return 0;
}

static int bench_ceiling(int step)
{
	long total_mib = meminfo_kb("MemTotal") >> 10;
	int pct, h = 0, m = 0;
	pid_t holder;

	for (pct = 30; pct <= 95; pct += step) {
		size_t mib = total_mib * pct / 100;

		holder = hold_memory(mib);
		if (holder < 0) {
			printf("BENCH kind=ceiling pct=%d mem_mib=%zu hold=failed\n", pct, mib);
			break;
		}
		h = hibsnap_image(mib, 0, 0);
		m = mainline_image(mib, 0, 0);
		printf("BENCH kind=ceiling pct=%d mem_mib=%zu total_mib=%ld", pct, mib, total_mib);
		printf(" hibsnap=%s mainline=%s\n", h ? strerrorname_np(-h) : "ok",
		       m ? strerrorname_np(-m) : "ok");
		release_memory(holder);
		if (h && m)
			break;
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	write_str("/sys/power/pm_debug_messages", "1");
	if (argc == 4 && !strcmp(argv[1], "memcpy"))
		return bench_memcpy(atol(argv[2]), atoi(argv[3]));
	if (argc == 4 && !strcmp(argv[1], "mem"))
		return bench_mem(atol(argv[2]), atoi(argv[3]));
	if (argc == 3 && !strcmp(argv[1], "ceiling"))
		return bench_ceiling(atoi(argv[2]));
	fprintf(stderr, "usage: %s memcpy MIB REPS | mem MIB REPS | ceiling STEP\n", argv[0]);
	return 2;
}
