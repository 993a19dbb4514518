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
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/fs.h>

#include "../kselftest_harness.h"
#include "hibsnap_util.h"

#define ORIGIN "/dev/ram0"
/* Another RAM disk of the same size, for a reload onto another origin. */
#define OTHER_ORIGIN "/dev/ram3"
#define DM_NAME "hstest"
#define DM_DEV "/dev/mapper/" DM_NAME
#define SECTOR 512
/* No udev here: dmsetup creates the /dev/mapper node itself. */
#define DMSETUP_CREATE "dmsetup create --noudevsync"
#define DMSETUP_MKNODES "dmsetup mknodes"

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

/* Read counter @key ("reads", "diverted", ...) and the mode from dmsetup status. */
static int status_field(const char *key, unsigned long long *val, char *mode, size_t mlen)
{
	char out[512], pat[64], *p;

	if (run(out, sizeof(out), "dmsetup status " DM_NAME))
		return -1;
	/* "0 131072 hibsnap MODE store N/LIMIT chunks reads R ..." */
	p = strstr(out, "hibsnap ");
	if (!p)
		return -1;
	if (mode && sscanf(p, "hibsnap %31s", mode) != 1)
		return -1;
	(void)mlen;
	snprintf(pat, sizeof(pat), " %s ", key);
	p = strstr(p, pat);
	if (!p)
		return -1;
	return sscanf(p + strlen(pat), "%llu", val) == 1 ? 0 : -1;
}

static int dm_message(const char *m)
{
	return run(NULL, 0, "dmsetup message " DM_NAME " 0 %s", m);
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
	run(NULL, 0, "umount /tmp/hsmnt");
	run(NULL, 0, "dmsetup remove --noudevsync " DM_NAME);
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
 * VM: a diagnostic printed by passthrough_data, not a test of its own (TCG
 * times assert nothing; the benchmark compares).
 */
static void throughput_diagnostic(unsigned long long sectors)
{
	double hw, hr, lw, lr;
	int mib = 32;

	/* brd allocates its pages on first write: fill the range once first. */
	if (throughput(ORIGIN, mib, &hw, &hr) || throughput(DM_DEV, mib, &hw, &hr) ||
	    run(NULL, 0, DMSETUP_CREATE " hslinear --table '0 %llu linear " ORIGIN " 0' && "
		DMSETUP_MKNODES " hslinear", sectors)) {
		ksft_print_msg("throughput: not measured\n");
		return;
	}
	if (throughput("/dev/mapper/hslinear", mib, &lw, &lr) == 0) {
		ksft_print_msg("%d MiB O_DIRECT: hibsnap write %.0f read %.0f MB/s\n", mib, hw, hr);
		ksft_print_msg("%d MiB O_DIRECT: linear  write %.0f read %.0f MB/s\n", mib, lw, lr);
		ksft_print_msg("hibsnap/linear: write %.2f read %.2f\n", hw / lw, hr / lr);
	}
	run(NULL, 0, "dmsetup remove --noudevsync hslinear");
}

/* Passthrough: what is written through the device is on the origin, and the other way round. */
TEST_F(dm, passthrough_data)
{
	static const off_t offsets[] = { 0, 4096, 4096 * 3, 1 << 20 };
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
	throughput_diagnostic(self->sectors);
}

/* dmsetup status counts bios; dmsetup table shows the origin and the store limit. */
TEST_F(dm, status_and_table)
{
	unsigned long long reads0, writes0, reads1, writes1;
	char out[512], mode[32];
	unsigned char *buf;

	ASSERT_EQ(0, status_field("reads", &reads0, mode, sizeof(mode)));
	ASSERT_EQ(0, status_field("writes", &writes0, NULL, 0));
	EXPECT_STREQ("passthrough", mode);

	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 4096));
	memset(buf, 0x5a, 4096);
	ASSERT_EQ(0, pio(DM_DEV, 1, buf, 4096, 8192));
	ASSERT_EQ(0, pio(DM_DEV, 0, buf, 4096, 8192));
	free(buf);

	ASSERT_EQ(0, status_field("reads", &reads1, NULL, 0));
	ASSERT_EQ(0, status_field("writes", &writes1, NULL, 0));
	EXPECT_GT(reads1, reads0);
	EXPECT_GT(writes1, writes0);

	ASSERT_EQ(0, run(out, sizeof(out), "dmsetup table " DM_NAME));
	EXPECT_NE(NULL, strstr(out, "hibsnap 1:0 256")) TH_LOG("table: %s", out);
}

/* Compare @len bytes of @path at @off with pattern @seed. */
static int has_pattern(const char *path, size_t len, unsigned int seed, off_t off)
{
	unsigned char *want, *got;
	int ok = -1;

	if (posix_memalign((void **)&want, 4096, len) || posix_memalign((void **)&got, 4096, len))
		return -1;
	pattern(want, len, seed, off);
	if (!pio(path, 0, got, len, off))
		ok = memcmp(want, got, len) ? 1 : 0;
	free(want);
	free(got);
	return ok;
}

static int put_pattern(const char *path, size_t len, unsigned int seed, off_t off)
{
	unsigned char *buf;
	int r;

	if (posix_memalign((void **)&buf, 4096, len))
		return -1;
	pattern(buf, len, seed, off);
	r = pio(path, 1, buf, len, off);
	free(buf);
	return r;
}

/* Regions written in the data tests: one chunk, two chunks, 64 KiB, and far out. */
static const struct {
	off_t off;
	size_t len;
} regions[] = {
	{ 0, 4096 }, { 12288, 8192 }, { 65536, 65536 }, { 8 << 20, 4096 },
};

/*
 * The view of a held snapshot: the device reads the data of seed @dev at
 * every region, its origin still holds seed @origin. Returns the number of
 * regions that differ, each named in the log.
 */
static int snapshot_view(unsigned int dev, unsigned int origin)
{
	int bad = 0;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(regions); i++) {
		if (has_pattern(DM_DEV, regions[i].len, dev, regions[i].off)) {
			ksft_print_msg("device at %lld: not the data of seed %u\n",
				       (long long)regions[i].off, dev);
			bad++;
		}
		if (has_pattern(ORIGIN, regions[i].len, origin, regions[i].off)) {
			ksft_print_msg("origin at %lld: not the data of seed %u\n",
				       (long long)regions[i].off, origin);
			bad++;
		}
	}
	return bad;
}

/*
 * Snapshot: new data through the device, old data on the origin. Merge: the
 * origin gets the new data. A second snapshot, then drop: the device reads
 * what the origin has, the merged data.
 */
TEST_F(dm, snapshot_merge_drop)
{
	unsigned long long chunks, diverted, served;
	char mode[32];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(regions); i++)
		ASSERT_EQ(0, put_pattern(DM_DEV, regions[i].len, 1, regions[i].off));
	ASSERT_EQ(0, dm_message("snapshot"));
	ASSERT_EQ(0, status_field("store", &chunks, mode, sizeof(mode)));
	EXPECT_STREQ("snapshot", mode);
	EXPECT_EQ(0ULL, chunks);

	for (i = 0; i < ARRAY_SIZE(regions); i++)
		ASSERT_EQ(0, put_pattern(DM_DEV, regions[i].len, 2, regions[i].off));
	EXPECT_EQ(0, snapshot_view(2, 1));
	ASSERT_EQ(0, status_field("diverted", &diverted, NULL, 0));
	ASSERT_EQ(0, status_field("served", &served, NULL, 0));
	/* 1 + 2 + 16 + 1 chunks written, each one bio. */
	EXPECT_EQ(20ULL, diverted);
	EXPECT_GE(served, 20ULL);

	ASSERT_EQ(0, dm_message("merge"));
	ASSERT_EQ(0, status_field("diverted", &diverted, mode, sizeof(mode)));
	EXPECT_STREQ("passthrough", mode);
	for (i = 0; i < ARRAY_SIZE(regions); i++)
		EXPECT_EQ(0, has_pattern(ORIGIN, regions[i].len, 2, regions[i].off))
			TH_LOG("origin at %lld: merge lost the new data",
			       (long long)regions[i].off);

	ASSERT_EQ(0, dm_message("snapshot"));
	for (i = 0; i < ARRAY_SIZE(regions); i++)
		ASSERT_EQ(0, put_pattern(DM_DEV, regions[i].len, 3, regions[i].off));
	EXPECT_EQ(0, has_pattern(DM_DEV, regions[0].len, 3, regions[0].off));
	ASSERT_EQ(0, dm_message("drop"));
	for (i = 0; i < ARRAY_SIZE(regions); i++) {
		EXPECT_EQ(0, has_pattern(DM_DEV, regions[i].len, 2, regions[i].off))
			TH_LOG("device at %lld: drop kept the snapshot's data",
			       (long long)regions[i].off);
		EXPECT_EQ(0, has_pattern(ORIGIN, regions[i].len, 2, regions[i].off));
	}
}

/*
 * Partial blocks (buffered writes of a few bytes), FUA (O_DSYNC), flushes
 * (fsync) and discards during a snapshot: all land in the store or complete,
 * and the origin receives nothing.
 */
TEST_F(dm, snapshot_partial_fua_flush_discard)
{
	unsigned char *before, *after;
	unsigned long long range[2] = { 1 << 20, 1 << 20 };
	char text[] = "hibsnap partial write";
	char back[sizeof(text)];
	int fd;

	ASSERT_EQ(0, posix_memalign((void **)&before, 4096, 4 << 20));
	ASSERT_EQ(0, posix_memalign((void **)&after, 4096, 4 << 20));
	ASSERT_EQ(0, pio(ORIGIN, 0, before, 4 << 20, 0));
	ASSERT_EQ(0, dm_message("snapshot"));

	/* A few bytes inside a block, through the page cache, then fsync (a flush). */
	fd = open(DM_DEV, O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_EQ((ssize_t)sizeof(text), pwrite(fd, text, sizeof(text), 4096 + 100));
	ASSERT_EQ(0, fsync(fd));
	close(fd);
	/* FUA writes. */
	fd = open(DM_DEV, O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	memset(after, 0x77, 8192);
	ASSERT_EQ(8192, pwrite(fd, after, 8192, 2 << 20));
	/* A discard. */
	EXPECT_EQ(0, ioctl(fd, BLKDISCARD, range));
	close(fd);

	fd = open(DM_DEV, O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(4096, pread(fd, after, 4096, 4096));
	close(fd);
	memcpy(back, after + 100, sizeof(back));
	EXPECT_EQ(0, memcmp(text, back, sizeof(text)));
	ASSERT_EQ(0, pio(ORIGIN, 0, after, 4 << 20, 0));
	EXPECT_EQ(0, memcmp(before, after, 4 << 20))
		TH_LOG("the origin changed during the snapshot");
	ASSERT_EQ(0, dm_message("drop"));
	free(before);
	free(after);
}

/*
 * An origin with a volatile write cache (the test boot's virtio disk; brd has
 * none, so no flush reaches a target over it): during a snapshot,
 * device-mapper sends the target each flush as an empty write with
 * REQ_PREFLUSH (for fsync(), or before a journal's commit block). They
 * complete, counted as flushes: an error there would abort a journal on a
 * system that runs on during the snapshot.
 */
#define CACHED_ORIGIN "/dev/vda"
TEST(flush_on_a_write_cache_device)
{
	unsigned long long flushes = 0;
	char out[512] = "";
	void *buf;
	int fd;

	ASSERT_EQ(0, run(out, sizeof(out), "cat /sys/block/vda/queue/write_cache"))
		TH_LOG("no %s: the harness gives the test boot a virtio disk", CACHED_ORIGIN);
	ASSERT_EQ(0, strncmp(out, "write back", 10))
		TH_LOG("%s write_cache: %s", CACHED_ORIGIN, out);
	run(NULL, 0, "dmsetup remove --noudevsync " DM_NAME);
	ASSERT_EQ(0, run(out, sizeof(out),
			 DMSETUP_CREATE " " DM_NAME " --table '0 %llu hibsnap %s' && "
			 DMSETUP_MKNODES " " DM_NAME, dev_sectors(CACHED_ORIGIN), CACHED_ORIGIN))
		TH_LOG("dmsetup create: %s", out);
	ASSERT_EQ(0, posix_memalign(&buf, 4096, 4096));
	memset(buf, 0x5a, 4096);
	ASSERT_EQ(0, dm_message("snapshot"));
	fd = open(DM_DEV, O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(4096, pwrite(fd, buf, 4096, 0));
	EXPECT_EQ(0, fsync(fd)) TH_LOG("fsync during a snapshot: %s", strerror(errno));
	ASSERT_EQ(4096, pwrite(fd, buf, 4096, 8192));
	EXPECT_EQ(0, fdatasync(fd)) TH_LOG("fdatasync during a snapshot: %s", strerror(errno));
	close(fd);
	EXPECT_EQ(0, status_field("flushes", &flushes, NULL, 0));
	EXPECT_GE(flushes, 2ULL);
	EXPECT_EQ(0, dm_message("drop"));
	EXPECT_EQ(0, run(NULL, 0, "dmsetup remove --noudevsync " DM_NAME));
	free(buf);
}

/* A full store fails writes with ENOSPC, says so in status, and drop recovers. */
TEST_F(dm, store_full_fails_writes)
{
	unsigned long long refused, chunks;
	unsigned char *buf;
	char out[512], mode[32];
	int fd, i, failed = 0, err = 0;

	run(NULL, 0, "dmsetup remove --noudevsync " DM_NAME);
	ASSERT_EQ(0, run(out, sizeof(out),
			 DMSETUP_CREATE " " DM_NAME " --table '0 %llu hibsnap " ORIGIN " 1' && "
			 DMSETUP_MKNODES " " DM_NAME, self->sectors)) TH_LOG("%s", out);
	ASSERT_EQ(0, dm_message("snapshot"));
	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 4096));
	memset(buf, 0x33, 4096);
	fd = open(DM_DEV, O_WRONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	/* A 1 MiB store holds 256 chunks: write 300. */
	for (i = 0; i < 300; i++) {
		if (pwrite(fd, buf, 4096, (off_t)i * 4096) != 4096) {
			failed++;
			err = errno;
		}
	}
	close(fd);
	EXPECT_EQ(44, failed);
	EXPECT_EQ(ENOSPC, err);
	ASSERT_EQ(0, status_field("refused", &refused, mode, sizeof(mode)));
	ASSERT_EQ(0, status_field("store", &chunks, NULL, 0));
	EXPECT_STREQ("full", mode);
	EXPECT_EQ(44ULL, refused);
	EXPECT_EQ(256ULL, chunks);
	/* Reads still work. */
	EXPECT_EQ(0, pio(DM_DEV, 0, buf, 4096, 0));
	ASSERT_EQ(0, dm_message("drop"));
	ASSERT_EQ(0, status_field("store", &chunks, mode, sizeof(mode)));
	EXPECT_STREQ("passthrough", mode);
	EXPECT_EQ(0ULL, chunks);
	EXPECT_EQ(0, pio(DM_DEV, 1, buf, 4096, 0));
	free(buf);
}

#define MNT "/tmp/hsmnt"
/*
 * e2fsprogs by absolute path: a busybox shell may prefer its own applets,
 * whatever PATH says.
 */

static int write_file(const char *path, unsigned int seed, size_t len)
{
	unsigned char *buf = malloc(len);
	int fd, r = -1;

	if (!buf)
		return -1;
	pattern(buf, len, seed, 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0 && write(fd, buf, len) == (ssize_t)len && !fsync(fd))
		r = 0;
	if (fd >= 0)
		close(fd);
	free(buf);
	return r;
}

/* 0: the file holds pattern @seed; 1: other contents; -1: cannot read it. */
static int check_file(const char *path, unsigned int seed, size_t len)
{
	unsigned char *want = malloc(len), *got = malloc(len + 1);
	int fd, r = -1;

	if (!want || !got)
		goto out;
	pattern(want, len, seed, 0);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto out;
	r = read(fd, got, len + 1) == (ssize_t)len && !memcmp(want, got, len) ? 0 : 1;
	close(fd);
out:
	free(want);
	free(got);
	return r;
}

/*
 * ext4 on the device. Files written after the snapshot survive a merge and
 * are gone after a drop; e2fsck finds the filesystem clean both times. The
 * snapshot is taken with the filesystem remounted read-only, so that the
 * disk at the snapshot is consistent, as the hibernation's sync makes it.
 */
TEST_F_TIMEOUT(dm, filesystem_merge_and_drop, 300)
{
	char out[2048];

	mkdir(MNT, 0755);
	ASSERT_EQ(0, run(out, sizeof(out), "/usr/sbin/mke2fs -q -F -t ext4 -b 4096 " DM_DEV))
		TH_LOG("mke2fs: %s", out);
	ASSERT_EQ(0, run(out, sizeof(out), "mount -t ext4 " DM_DEV " " MNT)) TH_LOG("%s", out);
	ASSERT_EQ(0, write_file(MNT "/before", 1, 100000));
	ASSERT_EQ(0, run(out, sizeof(out), "mount -o remount,ro " MNT)) TH_LOG("%s", out);

	/* Merge: the abort path. */
	ASSERT_EQ(0, dm_message("snapshot"));
	ASSERT_EQ(0, run(out, sizeof(out), "mount -o remount,rw " MNT)) TH_LOG("%s", out);
	ASSERT_EQ(0, write_file(MNT "/after-merge", 2, 300000));
	ASSERT_EQ(0, run(out, sizeof(out), "umount " MNT)) TH_LOG("%s", out);
	ASSERT_EQ(0, dm_message("merge"));
	EXPECT_EQ(0, run(out, sizeof(out), "/usr/sbin/e2fsck -fn " DM_DEV))
		TH_LOG("e2fsck: %s", out);
	ASSERT_EQ(0, run(out, sizeof(out), "mount -t ext4 " DM_DEV " " MNT)) TH_LOG("%s", out);
	EXPECT_EQ(0, check_file(MNT "/before", 1, 100000));
	EXPECT_EQ(0, check_file(MNT "/after-merge", 2, 300000));
	ASSERT_EQ(0, run(out, sizeof(out), "mount -o remount,ro " MNT)) TH_LOG("%s", out);

	/* Drop: the resumed-system path. */
	ASSERT_EQ(0, dm_message("snapshot"));
	ASSERT_EQ(0, run(out, sizeof(out), "mount -o remount,rw " MNT)) TH_LOG("%s", out);
	ASSERT_EQ(0, write_file(MNT "/after-drop", 3, 200000));
	ASSERT_EQ(0, run(out, sizeof(out), "umount " MNT)) TH_LOG("%s", out);
	ASSERT_EQ(0, dm_message("drop"));
	EXPECT_EQ(0, run(out, sizeof(out), "/usr/sbin/e2fsck -fn " DM_DEV))
		TH_LOG("e2fsck: %s", out);
	ASSERT_EQ(0, run(out, sizeof(out), "mount -t ext4 -o ro " DM_DEV " " MNT))
		TH_LOG("%s", out);
	EXPECT_EQ(0, check_file(MNT "/before", 1, 100000));
	EXPECT_EQ(0, check_file(MNT "/after-merge", 2, 300000));
	EXPECT_EQ(-1, check_file(MNT "/after-drop", 3, 200000));
	run(NULL, 0, "umount " MNT);
}

/*
 * The device the test kernel creates at boot (dm-mod.create=) went through
 * the in-kernel interface in KUnit: it must be back in passthrough, with an
 * empty store.
 */
TEST(boot_device_back_in_passthrough)
{
	char out[512];

	if (run(out, sizeof(out), "dmsetup status hsboot"))
		SKIP(return, "no hsboot device (the harness creates it at boot)");
	EXPECT_NE(NULL, strstr(out, "hibsnap passthrough store 0/")) TH_LOG("status: %s", out);
}

/* Messages in the wrong state, or with arguments, are refused and change nothing. */
TEST_F(dm, messages_in_wrong_state)
{
	char mode[32];
	unsigned long long v;

	EXPECT_NE(0, dm_message("merge"));
	EXPECT_NE(0, dm_message("drop"));
	EXPECT_NE(0, dm_message("snapshot now"));
	ASSERT_EQ(0, status_field("reads", &v, mode, sizeof(mode)));
	EXPECT_STREQ("passthrough", mode);
	ASSERT_EQ(0, dm_message("snapshot"));
	EXPECT_NE(0, dm_message("snapshot"));
	ASSERT_EQ(0, status_field("reads", &v, mode, sizeof(mode)));
	EXPECT_STREQ("snapshot", mode);
	ASSERT_EQ(0, dm_message("drop"));
}

/*
 * Removing the device while a snapshot with data is held succeeds, merges the
 * store back into the origin (no write is lost) and frees it: 8 MiB of chunks
 * show up in Slab, and are gone after the remove.
 */
TEST_F(dm, remove_while_snapshot_held)
{
	long slab0, slab1, slab2;

	slab0 = meminfo_kb("Slab");
	ASSERT_EQ(0, dm_message("snapshot"));
	ASSERT_EQ(0, put_pattern(DM_DEV, 8 << 20, 9, 0));
	slab1 = meminfo_kb("Slab");
	EXPECT_EQ(0, run(NULL, 0, "dmsetup remove --noudevsync " DM_NAME));
	EXPECT_NE(0, run(NULL, 0, "dmsetup info " DM_NAME));
	slab2 = meminfo_kb("Slab");
	TH_LOG("Slab: %ld kB before, %ld kB with 8 MiB in the store, %ld kB after the remove",
	       slab0, slab1, slab2);
	EXPECT_GE(slab1 - slab0, 8 * 1024);
	EXPECT_LT(slab2 - slab0, 1024);
	EXPECT_EQ(0, has_pattern(ORIGIN, 8 << 20, 9, 0)) TH_LOG("the store was not merged");
}

#define RELOAD_AND_RESUME \
	"dmsetup reload " DM_NAME " --table '0 %llu hibsnap %s' && dmsetup resume " DM_NAME

/* Reloads DM_NAME with a hibsnap table over @origin and resumes it; 0 or -1. */
static int reload_hibsnap(const char *origin, unsigned long long sectors)
{
	char out[512];

	if (run(out, sizeof(out), RELOAD_AND_RESUME, sectors, origin)) {
		fprintf(stderr, "# dmsetup: %s\n", out);
		return -1;
	}
	return 0;
}

/*
 * A table reloaded in place while a snapshot is held takes the snapshot
 * over: the writes since the snapshot stay in the store, the device reads
 * them, the origin keeps the old data, and a merge puts them on the origin.
 * (The old target's store used to go with its table.)
 */
TEST_F(dm, reload_keeps_the_snapshot)
{
	unsigned long long before, after;
	char mode[32];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(regions); i++)
		ASSERT_EQ(0, put_pattern(DM_DEV, regions[i].len, 1, regions[i].off));
	ASSERT_EQ(0, dm_message("snapshot"));
	for (i = 0; i < ARRAY_SIZE(regions); i++)
		ASSERT_EQ(0, put_pattern(DM_DEV, regions[i].len, 2, regions[i].off));
	ASSERT_EQ(0, status_field("store", &before, NULL, 0));
	EXPECT_EQ(20ULL, before);

	ASSERT_EQ(0, reload_hibsnap(ORIGIN, self->sectors));
	ASSERT_EQ(0, status_field("store", &after, mode, sizeof(mode)));
	EXPECT_STREQ("snapshot", mode);
	EXPECT_EQ(before, after);
	EXPECT_EQ(0, snapshot_view(2, 1)) TH_LOG("the reload lost the snapshot");
	ASSERT_EQ(0, dm_message("merge"));
	for (i = 0; i < ARRAY_SIZE(regions); i++)
		EXPECT_EQ(0, has_pattern(ORIGIN, regions[i].len, 2, regions[i].off))
			TH_LOG("origin at %lld: merge lost the data", (long long)regions[i].off);
}

/*
 * A reload onto another origin while a snapshot is held cannot take it over:
 * the old target merges its store back into its own origin when its table is
 * destroyed, so that no write is lost, and the new table passes through.
 */
TEST_F(dm, reload_onto_another_origin_merges)
{
	char mode[32];
	unsigned long long chunks;
	size_t i;

	ASSERT_EQ(self->sectors, dev_sectors(OTHER_ORIGIN));
	ASSERT_EQ(0, dm_message("snapshot"));
	for (i = 0; i < ARRAY_SIZE(regions); i++)
		ASSERT_EQ(0, put_pattern(DM_DEV, regions[i].len, 4, regions[i].off));
	ASSERT_EQ(0, reload_hibsnap(OTHER_ORIGIN, self->sectors));
	ASSERT_EQ(0, status_field("store", &chunks, mode, sizeof(mode)));
	EXPECT_STREQ("passthrough", mode);
	EXPECT_EQ(0ULL, chunks);
	for (i = 0; i < ARRAY_SIZE(regions); i++)
		EXPECT_EQ(0, has_pattern(ORIGIN, regions[i].len, 4, regions[i].off))
			TH_LOG("origin at %lld: the snapshot's writes were lost",
			       (long long)regions[i].off);
}

/* Bad table lines are refused with a clear error and leave no device behind. */
TEST_F(dm, bad_tables)
{
	static const char *const bad[] = {
		"hibsnap",				/* no origin */
		"hibsnap /dev/ram0 extra",		/* too many arguments */
		"hibsnap /dev/does-not-exist",		/* no such device */
		"hibsnap /dev/ram0 0",			/* store limit 0 */
		"hibsnap /dev/ram0 lots",		/* store limit not a number */
		"hibsnap /dev/ram0 1 2",		/* too many arguments */
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
	/* A length that is not a whole number of 4 KiB chunks. */
	EXPECT_NE(0, run(out, sizeof(out),
			 DMSETUP_CREATE " hsbad --table '0 7 hibsnap " ORIGIN "'"));
	run(NULL, 0, "dmsetup remove --noudevsync hsbad");
}

/* Unknown messages are refused; the device works on. */
TEST_F(dm, unknown_message)
{
	unsigned char *buf;

	EXPECT_NE(0, dm_message("no-such-message"));
	EXPECT_NE(0, dm_message("''"));
	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 4096));
	EXPECT_EQ(0, pio(DM_DEV, 0, buf, 4096, 0));
	free(buf);
}

TEST_HARNESS_MAIN
