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
 *   hibsnap_bench pagecache DIR MIB REPS
 *	the same with MIB MiB of files in DIR in the page cache, read after a
 *	cache drop before each repetition; and the rate of a read of those
 *	cached files (the kernel's own copy to user space, beside the image's)
 *   hibsnap_bench ceiling STEP
 *	from 30% of MemTotal up to 95% in steps of STEP%: whether each can image a
 *	child holding that much anonymous memory, no swap; stops after both
 *	failed
 *   hibsnap_bench hold MIB
 *	the end-to-end workload (harness/initramfs/bench): a process left
 *	running that holds MIB MiB of anonymous memory, half random bytes and
 *	half text-like bytes (memory that compresses as a desktop's does);
 *	prints "pid addr mib sum" for "verify"
 *   hibsnap_bench verify PID ADDR MIB SUM
 *	reads that memory through /proc/PID/mem: is it what was written?
 *   hibsnap_bench mark WHAT
 *	"BENCH-MARK WHAT 0 0", once the serial port has sent it
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
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <linux/hibsnap.h>
#include <linux/suspend_ioctls.h>

#include "hibsnap_util.h"

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif
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

/*
 * Fills @len bytes at @p with text-like bytes, numbered lines of a few words,
 * which compress about as well as a desktop's memory does.
 */
static void text_fill(char *p, size_t len)
{
	static const char *const words[] = {
		"the", "image", "kernel", "page", "copy", "write", "swap", "resume",
		"memory", "device", "snapshot", "process", "block", "freeze",
	};
	uint64_t x = 88172645463325252ULL;
	size_t off = 0, line = 0;
	char buf[128];
	int n, i;

	while (off < len) {
		n = snprintf(buf, sizeof(buf), "%08zu", line++);
		for (i = 0; i < 6; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			n += snprintf(buf + n, sizeof(buf) - n, " %s", words[x % 14]);
		}
		buf[n++] = '\n';
		memcpy(p + off, buf, len - off < (size_t)n ? len - off : (size_t)n);
		off += n;
	}
}

/* Goes on with checksum @h over @len bytes (a multiple of 8) at @p; start with CHECKSUM_INIT. */
#define CHECKSUM_INIT 1469598103934665603ULL
static uint64_t checksum(uint64_t h, const void *p, size_t len)
{
	const uint64_t *w = p;
	size_t i;

	for (i = 0; i < len / sizeof(*w); i++)
		h = (h ^ w[i]) * 1099511628211ULL;
	return h;
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
static void print_image(const char *kind, const char *workload, size_t mib, int rep,
			double secs, double off_ms, long long bytes, double t_read)
{
	printf("BENCH kind=%s workload=%s mem_mib=%zu rep=%d snapshot_s=%.4f irqs_off_ms=%.2f",
	       kind, workload, mib, rep, secs, off_ms);
	printf(" image_mib=%.1f read_s=%.4f read_mibs=%.1f\n",
	       bytes / (double)MIB, t_read, bytes / (double)MIB / t_read);
}

/*
 * hibsnap: freeze, snapshot_kernel(2), read the image; 0 or -errno. Prints
 * its marks and line if @workload is not NULL.
 */
static int hibsnap_image(size_t mib, int rep, const char *workload)
{
	int print = !!workload;
	struct hibsnap_geometry g = { 0 };
	double t0, t_snap, t_read = 0;
	long long bytes = 0;
	int frz, fd, err = 0;
	char what[64];

	if (print) {
		snprintf(what, sizeof(what), "hibsnap-%s-begin", workload);
		mark(what, mib, rep);
	}
	t0 = now_s();
	frz = sys_freeze_processes(0);
	if (frz < 0)
		return -errno;
	fd = sys_snapshot_kernel(0, 0);
	t_snap = now_s() - t0;
	if (print) {
		snprintf(what, sizeof(what), "hibsnap-%s-end", workload);
		mark(what, mib, rep);
	}
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
		print_image("hibsnap", workload, mib, rep, t_snap, g.atomic_ns / 1e6, bytes,
			    t_read);
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

/* Mainline: /dev/snapshot's freeze, SNAPSHOT_CREATE_IMAGE, read(); as hibsnap_image(). */
static int mainline_image(size_t mib, int rep, const char *workload)
{
	int print = !!workload;
	double t0, t_create = 0, t_read = 0, off_ms;
	int fd, in_suspend = 0, err = 0;
	long long bytes = 0;
	char what[64];

	fd = open("/dev/snapshot", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, SNAPSHOT_FREEZE)) {
		err = -errno;
		close(fd);
		return err;
	}
	if (print) {
		snprintf(what, sizeof(what), "mainline-%s-begin", workload);
		mark(what, mib, rep);
	}
	t0 = now_s();
	if (ioctl(fd, SNAPSHOT_CREATE_IMAGE, &in_suspend)) {
		err = -errno;
	} else {
		t_create = now_s() - t0;
		if (print) {
			snprintf(what, sizeof(what), "mainline-%s-end", workload);
			mark(what, mib, rep);
		}
		bytes = read_all(fd, &t_read);
		if (bytes < 0)
			err = bytes;
		ioctl(fd, SNAPSHOT_FREE);
	}
	ioctl(fd, SNAPSHOT_UNFREEZE);
	close(fd);
	off_ms = (log_time("Image created") - log_time("Creating image")) * 1e3;
	if (print && !err)
		print_image("mainline", workload, mib, rep, t_create, off_ms, bytes, t_read);
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
	memcpy(b, a, mib * MIB); /* once untimed: the first copy is slower under TCG */
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
		err = hibsnap_image(mib, i, "anon");
		if (err)
			printf("BENCH kind=hibsnap mem_mib=%zu rep=%d error=%s\n", mib, i,
			       strerrorname_np(-err));
		err = mainline_image(mib, i, "anon");
		if (err)
			printf("BENCH kind=mainline mem_mib=%zu rep=%d error=%s\n", mib, i,
			       strerrorname_np(-err));
	}
	release_memory(holder);
	return 0;
}

/* Reads @dir/f* (@mib MiB): the bytes read, or -1; *@secs the time it took. */
static long long read_files(const char *dir, size_t mib, double *secs)
{
	static char buf[1 << 20];
	long long total = 0;
	double t0 = now_s();
	char path[256];
	size_t i;
	ssize_t n;
	int fd;

	for (i = 0; i < mib; i += 16) {
		snprintf(path, sizeof(path), "%s/f%zu", dir, i);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -1;
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			total += n;
		close(fd);
		if (n < 0)
			return -1;
	}
	*secs = now_s() - t0;
	return total;
}

/* Reads @dir/f* back after a cache drop, into the page cache: the bytes read, or -1. */
static long long fill_pagecache(const char *dir, size_t mib)
{
	double secs;

	sync();
	if (write_str("/proc/sys/vm/drop_caches", "3"))
		return -1;
	return read_files(dir, mib, &secs);
}

/* Writes @mib MiB of files (16 MiB each) in @dir: 0 or -1. */
static int write_files(const char *dir, size_t mib)
{
	static char buf[16 << 20];
	char path[256];
	size_t i;
	int fd;

	for (i = 0; i < mib; i += 16) {
		random_fill(buf, sizeof(buf), i + 1);
		snprintf(path, sizeof(path), "%s/f%zu", dir, i);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return -1;
		if (write(fd, buf, sizeof(buf)) != sizeof(buf) || fsync(fd)) {
			close(fd);
			return -1;
		}
		close(fd);
	}
	return 0;
}

static int bench_pagecache(const char *dir, size_t mib, int reps)
{
	long long cached, bytes;
	double secs = 1;
	int i, err;

	if (write_files(dir, mib)) {
		printf("BENCH kind=error what=pagecache-write mem_mib=%zu errno=%s\n", mib,
		       strerrorname_np(errno));
		return 1;
	}
	for (i = 0; i < reps; i++) {
		cached = fill_pagecache(dir, mib);
		/* The kernel's own copy to user space, for the stream's rate: a cached read. */
		bytes = read_files(dir, mib, &secs);
		printf("BENCH kind=pagecache mem_mib=%zu rep=%d read_mib=%lld cached_mib=%ld",
		       mib, i, cached >> 20, meminfo_kb("Cached") >> 10);
		printf(" cached_read_mibs=%.1f\n", bytes / (double)MIB / secs);
		err = hibsnap_image(mib, i, "pagecache");
		if (err) {
			printf("BENCH kind=hibsnap workload=pagecache mem_mib=%zu rep=%d",
			       mib, i);
			printf(" error=%s\n", strerrorname_np(-err));
		}
		fill_pagecache(dir, mib);
		err = mainline_image(mib, i, "pagecache");
		if (err) {
			printf("BENCH kind=mainline workload=pagecache mem_mib=%zu rep=%d",
			       mib, i);
			printf(" error=%s\n", strerrorname_np(-err));
		}
	}
	return 0;
}

/*
 * The end-to-end workload: a process, left running, holding @mib MiB, the
 * first half random bytes, the second text-like. Prints "PID ADDR MIB SUM".
 */
static int bench_hold(size_t mib)
{
	int ready[2];
	char line[128];
	ssize_t n;
	pid_t pid;

	if (pipe(ready))
		return 1;
	pid = fork();
	if (pid == 0) {
		size_t len = mib * MIB;
		char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);

		if (m == MAP_FAILED)
			_exit(1);
		close(ready[0]);
		/* Its caller waits for the end of the output, "$(hibsnap_bench hold N)". */
		n = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (n < 0 || dup2(n, STDIN_FILENO) < 0 || dup2(n, STDOUT_FILENO) < 0 ||
		    dup2(n, STDERR_FILENO) < 0)
			_exit(1);
		random_fill(m, len / 2, mib);
		text_fill(m + len / 2, len - len / 2);
		n = snprintf(line, sizeof(line), "%d %p %zu %llx\n", getpid(), m, mib,
			     (unsigned long long)checksum(CHECKSUM_INIT, m, len));
		if (write(ready[1], line, n) != n)
			_exit(1);
		close(ready[1]);
		setsid();
		for (;;)
			pause();
	}
	close(ready[1]);
	n = pid < 0 ? -1 : read(ready[0], line, sizeof(line) - 1);
	close(ready[0]);
	if (n <= 0)
		return 1;
	line[n] = 0;
	fputs(line, stdout);
	return 0;
}

/*
 * Is @pid's memory at @addr what bench_hold() wrote? 0 if so. Read a piece at a
 * time: the held memory may be most of RAM.
 */
static int bench_verify(pid_t pid, unsigned long addr, size_t mib, uint64_t sum)
{
	static char buf[READ_CHUNK];
	uint64_t got = CHECKSUM_INIT;
	size_t off, n;
	char path[64];
	int fd, ok;

	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ok = fd >= 0;
	for (off = 0; ok && off < mib * MIB; off += n) {
		n = mib * MIB - off < READ_CHUNK ? mib * MIB - off : READ_CHUNK;
		ok = pread(fd, buf, n, addr + off) == (ssize_t)n;
		got = checksum(got, buf, n);
	}
	printf("BENCH kind=verify pid=%d mem_mib=%zu ok=%d\n", pid, mib, ok && got == sum);
	if (fd >= 0)
		close(fd);
	return !(ok && got == sum);
}

static int bench_ceiling(int step)
{
	static const char *const keys[] = {
		"MemFree", "AnonPages", "Shmem", "Cached", "Slab", "PageTables",
		"KernelStack", "VmallocUsed", "Percpu",
	};
	long total_mib = meminfo_kb("MemTotal") >> 10;
	int pct, h = 0, m = 0;
	pid_t holder;
	size_t i;

	for (pct = 30; pct <= 95; pct += step) {
		size_t mib = total_mib * pct / 100;

		holder = hold_memory(mib);
		if (holder < 0) {
			printf("BENCH kind=ceiling pct=%d mem_mib=%zu hold=failed\n", pct, mib);
			break;
		}
		/* Where the memory is, for the report: the kernel's part is copied. */
		printf("BENCH kind=meminfo pct=%d", pct);
		for (i = 0; i < ARRAY_SIZE(keys); i++)
			printf(" %s_kb=%ld", keys[i], meminfo_kb(keys[i]));
		printf("\n");
		h = hibsnap_image(mib, 0, NULL);
		m = mainline_image(mib, 0, NULL);
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
	if (argc == 5 && !strcmp(argv[1], "pagecache"))
		return bench_pagecache(argv[2], atol(argv[3]), atoi(argv[4]));
	if (argc == 3 && !strcmp(argv[1], "ceiling"))
		return bench_ceiling(atoi(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "hold"))
		return bench_hold(atol(argv[2]));
	if (argc == 6 && !strcmp(argv[1], "verify"))
		return bench_verify(atoi(argv[2]), strtoul(argv[3], NULL, 16), atol(argv[4]),
				    strtoull(argv[5], NULL, 16));
	if (argc == 3 && !strcmp(argv[1], "mark")) {
		mark(argv[2], 0, 0);
		return 0;
	}
	fprintf(stderr, "usage: %s memcpy MIB REPS | mem MIB REPS | pagecache DIR MIB REPS |\n"
		"\tceiling STEP | hold MIB | verify PID ADDR MIB SUM | mark WHAT\n", argv[0]);
	return 2;
}
