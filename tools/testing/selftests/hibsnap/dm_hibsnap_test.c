// SPDX-License-Identifier: GPL-2.0
/*
 * Tests of the dm-hibsnap device-mapper target, driven by stock dmsetup
 * over a brd RAM disk (/dev/ram0). See Documentation/power/hibsnap.rst.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/fs.h>

#include "../kselftest_harness.h"

#define ORIGIN "/dev/ram0"
#define DM_NAME "hstest"
#define DM_DEV "/dev/mapper/" DM_NAME
#define SECTOR 512
/* No udev here: dmsetup creates the /dev/mapper node itself. */
#define DMSETUP_CREATE "dmsetup create --noudevsync"
#define DMSETUP_MKNODES "dmsetup mknodes"

/* Run a shell command; its output (stdout and stderr) goes to @out. */
static int run(char *out, size_t len, const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	size_t n = 0;
	FILE *p;
	int status;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	strncat(cmd, " 2>&1", sizeof(cmd) - strlen(cmd) - 1);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (out && len) {
		n = fread(out, 1, len - 1, p);
		out[n] = 0;
	} else {
		char sink[256];

		while (fread(sink, 1, sizeof(sink), p) > 0)
			;
	}
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static unsigned long long dev_sectors(const char *path)
{
	unsigned long long bytes = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (ioctl(fd, BLKGETSIZE64, &bytes))
		bytes = 0;
	close(fd);
	return bytes / SECTOR;
}

/* Fill @buf with a pattern that depends on @seed and the byte's offset. */
static void pattern(unsigned char *buf, size_t len, unsigned int seed, off_t off)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (unsigned char)((off + i) * 131 + seed * 7 + ((off + i) >> 9));
}

static int pio(const char *path, int write, void *buf, size_t len, off_t off)
{
	int fd = open(path, (write ? O_WRONLY : O_RDONLY) | O_DIRECT | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write ? pwrite(fd, buf, len, off) : pread(fd, buf, len, off);
	if (write && n == (ssize_t)len && fsync(fd))
		n = -1;
	close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

FIXTURE(dm)
{
	unsigned long long sectors;
};

FIXTURE_SETUP(dm)
{
	char out[512];

	self->sectors = dev_sectors(ORIGIN);
	ASSERT_NE(0ULL, self->sectors) TH_LOG("no %s (brd)", ORIGIN);
	run(NULL, 0, "dmsetup remove --noudevsync " DM_NAME);
	ASSERT_EQ(0, run(out, sizeof(out),
			 DMSETUP_CREATE " " DM_NAME " --table '0 %llu hibsnap " ORIGIN "' && "
			 DMSETUP_MKNODES " " DM_NAME, self->sectors))
		TH_LOG("dmsetup create: %s", out);
	ASSERT_EQ(self->sectors, dev_sectors(DM_DEV));
}

FIXTURE_TEARDOWN(dm)
{
	run(NULL, 0, "dmsetup remove --noudevsync " DM_NAME);
}

/* Passthrough: what is written through the device is on the origin, and the other way round. */
TEST_F(dm, passthrough_data)
{
	static const off_t offsets[] = { 0, 4096, 512 * 3, 1 << 20 };
	unsigned char *w, *r;
	size_t i, len = 3 * 4096;

	ASSERT_EQ(0, posix_memalign((void **)&w, 4096, len));
	ASSERT_EQ(0, posix_memalign((void **)&r, 4096, len));
	for (i = 0; i < ARRAY_SIZE(offsets); i++) {
		pattern(w, len, i, offsets[i]);
		ASSERT_EQ(0, pio(DM_DEV, 1, w, len, offsets[i]));
		memset(r, 0, len);
		ASSERT_EQ(0, pio(ORIGIN, 0, r, len, offsets[i]));
		EXPECT_EQ(0, memcmp(w, r, len)) TH_LOG("offset %lld", (long long)offsets[i]);

		pattern(w, len, i + 100, offsets[i]);
		ASSERT_EQ(0, pio(ORIGIN, 1, w, len, offsets[i]));
		memset(r, 0, len);
		ASSERT_EQ(0, pio(DM_DEV, 0, r, len, offsets[i]));
		EXPECT_EQ(0, memcmp(w, r, len)) TH_LOG("offset %lld", (long long)offsets[i]);
	}
	free(w);
	free(r);
}

/* dmsetup status counts bios; dmsetup table shows the origin. */
TEST_F(dm, status_and_table)
{
	unsigned long long reads0, writes0, reads1, writes1;
	char out[512], *p;
	int n;
	unsigned char *buf;

	ASSERT_EQ(0, run(out, sizeof(out), "dmsetup status " DM_NAME));
	p = strstr(out, "passthrough");
	ASSERT_NE(NULL, p) TH_LOG("status: %s", out);
	n = sscanf(p, "passthrough reads %llu writes %llu", &reads0, &writes0);
	ASSERT_EQ(2, n);

	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 4096));
	memset(buf, 0x5a, 4096);
	ASSERT_EQ(0, pio(DM_DEV, 1, buf, 4096, 8192));
	ASSERT_EQ(0, pio(DM_DEV, 0, buf, 4096, 8192));
	free(buf);

	ASSERT_EQ(0, run(out, sizeof(out), "dmsetup status " DM_NAME));
	p = strstr(out, "passthrough");
	ASSERT_NE(NULL, p);
	n = sscanf(p, "passthrough reads %llu writes %llu", &reads1, &writes1);
	ASSERT_EQ(2, n);
	EXPECT_GT(reads1, reads0);
	EXPECT_GT(writes1, writes0);

	ASSERT_EQ(0, run(out, sizeof(out), "dmsetup table " DM_NAME));
	EXPECT_NE(NULL, strstr(out, "hibsnap 1:0")) TH_LOG("table: %s", out);
}

/* Bad table lines are refused with a clear error and leave no device behind. */
TEST_F(dm, bad_tables)
{
	static const char *const bad[] = {
		"hibsnap",				/* no origin */
		"hibsnap /dev/ram0 extra",		/* too many arguments */
		"hibsnap /dev/does-not-exist",		/* no such device */
	};
	char out[512];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		EXPECT_NE(0, run(out, sizeof(out),
				 DMSETUP_CREATE " hsbad --table '0 8 %s'", bad[i]))
			TH_LOG("table '%s' was accepted", bad[i]);
		EXPECT_NE(0, run(NULL, 0, "dmsetup info hsbad"))
			TH_LOG("table '%s' left a device behind", bad[i]);
		run(NULL, 0, "dmsetup remove --noudevsync hsbad");
	}
}

/* Unknown messages are refused; the device works on. */
TEST_F(dm, unknown_message)
{
	unsigned char *buf;
	char out[512];

	EXPECT_NE(0, run(out, sizeof(out), "dmsetup message " DM_NAME " 0 no-such-message"));
	EXPECT_NE(0, run(out, sizeof(out), "dmsetup message " DM_NAME " 0 ''"));
	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 4096));
	EXPECT_EQ(0, pio(DM_DEV, 0, buf, 4096, 0));
	free(buf);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sequential O_DIRECT write then read of @mib MiB; MB/s of each. */
static int throughput(const char *path, int mib, double *w_mbs, double *r_mbs)
{
	size_t chunk = 1 << 20;
	unsigned char *buf;
	double t0;
	int fd, i;

	if (posix_memalign((void **)&buf, 4096, chunk))
		return -1;
	memset(buf, 0xa5, chunk);
	fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		return -1;
	t0 = now_s();
	for (i = 0; i < mib; i++)
		if (pwrite(fd, buf, chunk, (off_t)i * chunk) != (ssize_t)chunk)
			return -1;
	fsync(fd);
	*w_mbs = mib * 1.048576 / (now_s() - t0);
	t0 = now_s();
	for (i = 0; i < mib; i++)
		if (pread(fd, buf, chunk, (off_t)i * chunk) != (ssize_t)chunk)
			return -1;
	*r_mbs = mib * 1.048576 / (now_s() - t0);
	close(fd);
	free(buf);
	return 0;
}

/*
 * Throughput through hibsnap (passthrough) and through linear, in the same
 * VM: printed, not asserted.
 */
TEST_F_TIMEOUT(dm, passthrough_throughput_vs_linear, 300)
{
	double hw, hr, lw, lr;
	int mib = 32;

	/* brd allocates its pages on first write: fill the range once first. */
	ASSERT_EQ(0, throughput(ORIGIN, mib, &hw, &hr));
	ASSERT_EQ(0, throughput(DM_DEV, mib, &hw, &hr));
	ASSERT_EQ(0, run(NULL, 0,
			 DMSETUP_CREATE " hslinear --table '0 %llu linear " ORIGIN " 0' && "
			 DMSETUP_MKNODES " hslinear", self->sectors));
	ASSERT_EQ(0, throughput("/dev/mapper/hslinear", mib, &lw, &lr));
	run(NULL, 0, "dmsetup remove --noudevsync hslinear");
	TH_LOG("%d MiB O_DIRECT: hibsnap write %.0f read %.0f MB/s", mib, hw, hr);
	TH_LOG("%d MiB O_DIRECT: linear  write %.0f read %.0f MB/s", mib, lw, lr);
	TH_LOG("hibsnap/linear: write %.2f read %.2f", hw / lw, hr / lr);
}

TEST_HARNESS_MAIN
