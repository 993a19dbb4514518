// SPDX-License-Identifier: GPL-2.0
/*
 * The minimal hibernate/resume round trip, across two boots of one kernel,
 * proving that the stream of snapshot_kernel(2) is a real image:
 *
 *   hibsnap_roundtrip save IMAGE_DEV SWAP_DEV
 *	turns swap on, starts a child holding a 16 MiB pattern (half of it
 *	paged out to swap), a child holding a 700 MiB pattern (all of it in
 *	RAM: most of a 1 GiB machine is user memory) and a counter process,
 *	freezes, takes the image, writes it raw to IMAGE_DEV (a header sector,
 *	then the stream from 4 KiB) and powers off. When the image is
 *	restored, the call returns again: the rest of the TAP output (the
 *	system resumed, the counter runs on, both patterns and the swapped-out
 *	pages read back) comes from the restored system.
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/reboot.h>
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
#define NR_TESTS 10

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
	unsigned int seed;
	pid_t pid;
	int ready[2], go[2], verdict[2];
};

/*
 * The child holding the pattern: fills it, pages half of it out to swap if
 * asked to, then, when a byte arrives on go, checks all of it and writes the
 * verdict.
 */
static void pattern_child(struct pattern *p)
{
	size_t len = p->mb << 20;
	unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *want = malloc(PAGE);
	char verdict = 'y';
	size_t off;

	if (m == MAP_FAILED || !want)
		_exit(1);
	for (off = 0; off < len; off += PAGE)
		pattern(m + off, PAGE, p->seed, off);
	if (p->pageout && madvise(m, len / 2, MADV_PAGEOUT))
		printf("# madvise(MADV_PAGEOUT): %s\n", strerror(errno));
	if (write(p->ready[1], "r", 1) != 1)
		_exit(1);
	if (read(p->go[0], &verdict, 1) != 1)
		_exit(1);
	verdict = 'y';
	for (off = 0; off < len; off += PAGE) {
		pattern(want, PAGE, p->seed, off);
		if (memcmp(m + off, want, PAGE))
			verdict = 'n';
	}
	if (write(p->verdict[1], &verdict, 1) != 1)
		_exit(1);
	for (;;)
		pause();
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

static int save(const char *image_dev, const char *swap_dev)
{
	unsigned long *counter = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct pattern small = { .mb = SWAPPED_MB, .pageout = 1, .seed = 7 };
	struct pattern large = { .mb = LARGE_MB, .pageout = 0, .seed = 11 };
	struct hibsnap_geometry g;
	struct header hdr = { HDR_MAGIC, 0 };
	unsigned long before;
	long swapped, rss, total;
	int frz, fd, dev;
	double deadline;
	char *buf, rss_s[64];
	ssize_t n;
	pid_t cnt;

	printf("TAP version 13\n1..%d\n", NR_TESTS);
	fflush(stdout);
	if (run(NULL, 0, "mkswap %s && swapon %s", swap_dev, swap_dev)) {
		result(0, "swap on %s", swap_dev);
		return 1;
	}
	if (counter == MAP_FAILED || start_pattern(&small) || start_pattern(&large))
		return 1;
	cnt = fork();
	if (cnt == 0) {
		for (;;)
			__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
	}
	if (cnt < 0)
		return 1;
	swapped = vm_swap_kb(small.pid);
	result(swapped > 0, "pattern child has %ld kB in swap", swapped);
	/* The large image: most of RAM is user memory, none of it in swap. */
	rss = proc_status(large.pid, "VmRSS:", rss_s, sizeof(rss_s)) ? -1 : strtol(rss_s, NULL, 10);
	total = meminfo_kb("MemTotal");
	result(rss >= (long)(LARGE_MB << 10) * 95 / 100 && vm_swap_kb(large.pid) == 0,
	       "large pattern child: %ld kB resident (%ld%% of MemTotal), none in swap",
	       rss, total > 0 ? rss * 100 / total : -1);

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
		/* Boot 1: write the image and power off, the image still open. */
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
	 * The restored system: the same call returned again. Test 3 (the image
	 * written) ran after the atomic point, in the first boot only.
	 */
	nr++;
	result(1, "snapshot_kernel returned in the restored system (resumed)");
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
	kill(small.pid, SIGKILL);
	kill(large.pid, SIGKILL);
	kill(cnt, SIGKILL);
	waitpid(small.pid, NULL, 0);
	waitpid(large.pid, NULL, 0);
	waitpid(cnt, NULL, 0);
	check_lockdown();
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
	if (argc == 4 && !strcmp(argv[1], "save"))
		return save(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "load"))
		return load(argv[2]);
	fprintf(stderr, "usage: %s save IMAGE_DEV SWAP_DEV | load IMAGE_DEV\n", argv[0]);
	return 2;
}
