// SPDX-License-Identifier: GPL-2.0
/*
 * Shared memory in a snapshot_kernel(2) image: tmpfs files, MAP_SHARED
 * anonymous memory, SysV shm and memfd are kept in place and copied before
 * their first write after the atomic point ("copy-before-write"; the table
 * of page classes is in Documentation/power/hibsnap.rst).
 *
 * Each writer below writes a kept page after the call returned, through one
 * of the paths shared memory can be written by; the page must be in the
 * image at its PFN with what it held at the atomic point, while the writer
 * sees its own write. Then a mixed workload of most of RAM, which does not
 * grow the copy of kernel memory. (When no memory is left for the copies:
 * snapshot_cow_test's exhaust.copy_before_write.)
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
#include <sys/mount.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/hibsnap.h>
#include <linux/kernel-page-flags.h>
#include <linux/udmabuf.h>

#include "../kselftest_harness.h"
#include "hibsnap_util.h"
#include "hibsnap_image.h"

#define HPAGE (2UL << 20)
#define TMPFS "/run/hsshared"
#define THPFS "/run/hsshared-thp"
/* The boot's small virtio disk (harness/inner/run test_boot). */
#define EXT_DEV "/dev/vda"
#define EXTFS "/run/hsshared-ext4"
#define WRITERS_FMT "copied %llu, in place %llu (shared %llu), shared copied: written %llu, before a write %llu"
#define MIXED_FMT "workload: %ld MiB, %ld%% of MemTotal (%ld MiB): private %zu, shared %zu, tmpfs %zu, SysV %zu, ext4 page cache %zu MiB\n"
#define KEPT_FMT "kept in place: %llu pages copy-on-write, %llu shared, %llu page cache\n"
#define COPY_FMT "kernel memory copied: %lld pages without the workload, %lld with it (%+.1f%%)\n"

/* Only for TEST_F_TIMEOUT(): the long tests need more than the default 30 s. */
FIXTURE(slow) {
	int unused;
};

FIXTURE_SETUP(slow) {}
FIXTURE_TEARDOWN(slow) {}

/* A tmpfs mounted on @dir with @opts; 0 or -1. */
static int tmpfs(const char *dir, const char *opts)
{
	mkdir(dir, 0755);
	umount(dir);
	return mount("tmpfs", dir, "tmpfs", 0, opts);
}

/* A shared mapping of @len bytes of @fd, or of shared anonymous memory (-1). */
static unsigned char *shared(int fd, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | (fd < 0 ? MAP_ANONYMOUS : 0), fd, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* A new file @path of @len bytes, mapped shared, or NULL. */
static unsigned char *new_file(const char *path, size_t len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	unsigned char *m = NULL;

	if (fd >= 0 && !ftruncate(fd, len))
		m = shared(fd, len);
	if (fd >= 0)
		close(fd);
	return m;
}

/* @len bytes of @seed's pattern at @off written to @fd at @off; 0 or -1. */
static int put(int fd, size_t len, unsigned int seed, off_t off)
{
	unsigned char *buf = malloc(len);
	int ret;

	if (!buf)
		return -1;
	pattern(buf, len, seed, off);
	ret = pwrite(fd, buf, len, off) == (ssize_t)len ? 0 : -1;
	free(buf);
	return ret;
}

/* Whether @fd holds @seed's pattern over [@off, @off + @len). */
static int holds(int fd, size_t len, unsigned int seed, off_t off)
{
	unsigned char *buf = malloc(len), *want = malloc(len);
	int ok;

	if (!buf || !want) {
		free(buf);
		free(want);
		return 0;
	}
	pattern(want, len, seed, off);
	ok = pread(fd, buf, len, off) == (ssize_t)len && !memcmp(buf, want, len);
	free(buf);
	free(want);
	return ok;
}

/* Faults in every page of [@p, @p + @len) for reading; 0 or -1. */
static int touch(void *p, size_t len)
{
	return madvise(p, len, MADV_POPULATE_READ);
}

/*
 * The child that writes shared memory of its own after the atomic point,
 * once continued as a helper would be: a page it had mapped (a write fault on
 * a write-protected PTE), a page it had not (a fault that maps it writable),
 * a memfd page through a mapping it makes only then, and its SysV shm
 * segment, which the test writes through process_vm_writev() (its address
 * is reported as pfn[0]).
 */
struct kid_mem {
	unsigned char *anon2;
	int memfd, shmid;
};

static int kid_setup(void *mem, unsigned long *pfn)
{
	struct kid_mem *km = mem;
	unsigned char *at = shmat(km->shmid, NULL, 0);

	/*
	 * Mapped here before the freeze: page 0 of anon2 (page 1, which
	 * fault-around maps with it, unmapped again), all of at.
	 */
	if (at == (void *)-1 || touch(km->anon2, PAGE) || touch(at, 2 * PAGE) ||
	    madvise(km->anon2 + PAGE, PAGE, MADV_DONTNEED) || pfn_of(km->anon2 + PAGE))
		return 1;
	pfn[0] = (unsigned long)at;
	return 0;
}

static int kid_write_shared(void *mem)
{
	struct kid_mem *km = mem;
	unsigned char *m;

	pattern(km->anon2, PAGE, 151, 0);
	pattern(km->anon2 + PAGE, PAGE, 152, PAGE);
	m = shared(km->memfd, 2 * PAGE);
	if (!m)
		return 0;
	pattern(m + PAGE, PAGE, 153, PAGE);
	return is_pattern(km->anon2, PAGE, 151, 0) &&
	       is_pattern(km->anon2 + PAGE, PAGE, 152, PAGE) &&
	       is_pattern(m + PAGE, PAGE, 153, PAGE);
}

static const struct kid_ops kid_ops = { kid_setup, kid_write_shared };

enum { T_WRITE, T_PUNCH, T_TRUNC, T_FMAP, T_FGONE, T_ANON_MAPPED, T_ANON_FAULT, T_SHM_MINE,
	T_SHM_KID, T_MEMFD_WRITE, T_MEMFD_MAP, T_THP0, T_THP1, T_THP2, NR_T };

static const char *const t_name[NR_T] = {
	"tmpfs file, page written by pwrite()",
	"tmpfs file, page partly punched out (fallocate PUNCH_HOLE)",
	"tmpfs file, page partly truncated (ftruncate)",
	"tmpfs file, page written through a shared mapping, then truncated away",
	"tmpfs file, page truncated away",
	"MAP_SHARED anonymous, page mapped in the writer (write-protect fault)",
	"MAP_SHARED anonymous, page not mapped in the writer (shared fault)",
	"SysV shm, written through the caller's mapping",
	"SysV shm, written by process_vm_writev() into a stopped child",
	"memfd, page written by write()",
	"memfd, page written through a mapping made after the atomic point",
	"tmpfs huge page, first page",
	"tmpfs huge page, page written through its PMD mapping",
	"tmpfs huge page, last page",
};

/*
 * Writes to kept shared pages after the atomic point, through every path:
 * each page is in the image at its PFN with its atomic-point contents, each
 * writer sees its write, and each copy made before a write is counted.
 */
TEST_F_TIMEOUT(slow, writers_after_atomic_point, 300)
{
	struct target *t = calloc(NR_T, sizeof(*t));
	struct stream s = { .t = t, .nr_t = NR_T };
	unsigned char *fm, *anon2, *shm, *mfm, *thp, buf[PAGE];
	struct hibsnap_geometry g;
	struct iovec local, remote;
	struct kid_mem km;
	struct kid k = { 0 };
	int frz, fd, f, thpf, mfd, shmid, i;
	uint64_t flags;

	ASSERT_NE(NULL, t);
	ASSERT_EQ(0, tmpfs(TMPFS, "size=64m"));
	ASSERT_EQ(0, tmpfs(THPFS, "size=16m,huge=always"));

	/* A tmpfs file of five pages, mapped to find them. */
	f = open(TMPFS "/f", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_LE(0, f);
	for (i = 0; i < 5; i++)
		ASSERT_EQ(0, put(f, PAGE, 41 + i, i * PAGE));
	fm = shared(f, 5 * PAGE);
	ASSERT_NE(NULL, fm);
	ASSERT_EQ(0, touch(fm, 5 * PAGE));
	for (i = 0; i < 5; i++)
		want(&t[T_WRITE + i], pfn_of(fm + i * PAGE), 41 + i, i * PAGE);

	/* Shared anonymous memory: the child maps page 0 only. */
	anon2 = shared(-1, 2 * PAGE);
	ASSERT_NE(NULL, anon2);
	pattern(anon2, 2 * PAGE, 46, 0);
	want(&t[T_ANON_MAPPED], pfn_of(anon2), 46, 0);
	want(&t[T_ANON_FAULT], pfn_of(anon2 + PAGE), 46, PAGE);

	/* SysV shm: page 0 the caller writes, page 1 the child's. */
	shmid = shmget(IPC_PRIVATE, 2 * PAGE, IPC_CREAT | 0600);
	ASSERT_LE(0, shmid);
	shm = shmat(shmid, NULL, 0);
	ASSERT_NE((void *)-1, shm);
	pattern(shm, 2 * PAGE, 47, 0);
	want(&t[T_SHM_MINE], pfn_of(shm), 47, 0);
	want(&t[T_SHM_KID], pfn_of(shm + PAGE), 47, PAGE);

	/* A memfd: page 0 written by write(), page 1 by the child's new mapping. */
	mfd = memfd_create("hsshared", MFD_CLOEXEC);
	ASSERT_LE(0, mfd);
	ASSERT_EQ(0, put(mfd, 2 * PAGE, 48, 0));
	mfm = shared(mfd, 2 * PAGE);
	ASSERT_NE(NULL, mfm);
	ASSERT_EQ(0, touch(mfm, 2 * PAGE));
	want(&t[T_MEMFD_WRITE], pfn_of(mfm), 48, 0);
	want(&t[T_MEMFD_MAP], pfn_of(mfm + PAGE), 48, PAGE);
	ASSERT_EQ(0, munmap(mfm, 2 * PAGE));

	/* A huge page of tmpfs, mapped by a PMD. */
	thpf = open(THPFS "/h", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_LE(0, thpf);
	ASSERT_EQ(0, put(thpf, HPAGE, 50, 0));
	thp = mmap(NULL, 2 * HPAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, thp);
	thp = (unsigned char *)(((uintptr_t)thp + HPAGE - 1) & ~(HPAGE - 1));
	ASSERT_EQ(thp, mmap(thp, HPAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, thpf, 0));
	ASSERT_EQ(0, touch(thp, HPAGE));
	want(&t[T_THP0], pfn_of(thp), 50, 0);
	want(&t[T_THP1], pfn_of(thp + HPAGE / 2), 50, HPAGE / 2);
	want(&t[T_THP2], pfn_of(thp + HPAGE - PAGE), 50, HPAGE - PAGE);
	flags = page_flags(t[T_THP1].pfn);
	ASSERT_TRUE(!!(flags & (1ULL << KPF_THP)))
		TH_LOG("not a huge page: flags %#llx", (unsigned long long)flags);

	km = (struct kid_mem){ .anon2 = anon2, .memfd = mfd, .shmid = shmid };
	ASSERT_EQ(0, kid_start(&k, &kid_ops, &km));
	for (i = 0; i < NR_T; i++)
		ASSERT_NE(0UL, t[i].pfn) TH_LOG("no PFN for target %d", i);

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	fd = sys_snapshot_kernel(0, 0);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));

	/* The writers, after the atomic point. */
	EXPECT_EQ(0, put(f, PAGE, 141, 0));
	EXPECT_EQ(0, fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, PAGE + 100, 200));
	pattern(fm + 3 * PAGE, PAGE, 144, 3 * PAGE);
	EXPECT_TRUE(is_pattern(fm + 3 * PAGE, PAGE, 144, 3 * PAGE));
	/* Pages 3 and 4 leave the file; the image still holds them. */
	EXPECT_EQ(0, ftruncate(f, 2 * PAGE + 100));
	pattern(shm, PAGE, 147, 0);
	pattern(buf, PAGE, 148, PAGE);
	local.iov_base = buf;
	local.iov_len = PAGE;
	remote.iov_base = (unsigned char *)k.pfn[0] + PAGE;
	remote.iov_len = PAGE;
	EXPECT_EQ((ssize_t)PAGE, process_vm_writev(k.pid, &local, 1, &remote, 1, 0));
	EXPECT_EQ(0, put(mfd, PAGE, 149, 0));
	pattern(thp + HPAGE / 2, PAGE, 150, HPAGE / 2);
	EXPECT_EQ(1, kid_write(&k));

	/* Each writer sees its write. */
	EXPECT_TRUE(holds(f, PAGE, 141, 0));
	EXPECT_TRUE(holds(f, 100, 42, PAGE) && holds(f, PAGE - 300, 42, PAGE + 300));
	memset(buf, 0xff, 200);
	EXPECT_EQ(200, pread(f, buf, 200, PAGE + 100));
	EXPECT_EQ(NULL, memchr(buf, 0xff, 200)) TH_LOG("the hole reads back non-zero");
	EXPECT_TRUE(holds(f, 100, 43, 2 * PAGE));
	EXPECT_EQ((off_t)(2 * PAGE + 100), lseek(f, 0, SEEK_END));
	EXPECT_TRUE(is_pattern(shm, PAGE, 147, 0));
	EXPECT_TRUE(is_pattern(shm + PAGE, PAGE, 148, PAGE));
	EXPECT_TRUE(is_pattern(anon2, PAGE, 151, 0));
	EXPECT_TRUE(holds(mfd, PAGE, 149, 0) && holds(mfd, PAGE, 153, PAGE));
	EXPECT_TRUE(is_pattern(thp + HPAGE / 2, PAGE, 150, HPAGE / 2));
	EXPECT_TRUE(is_pattern(thp, HPAGE / 2, 50, 0));

	ASSERT_EQ(0, geometry(fd, &g));
	ASSERT_EQ(0, read_stream(fd, &s));
	close(fd);
	close(frz);
	TH_LOG(WRITERS_FMT, g.copied_pages, g.streamed_pages, g.shared_pages, g.written_pages,
	       g.cbw_pages);
	EXPECT_EQ(0, targets_missed(t, NR_T, t_name));
	/*
	 * Every page above is kept in place; each written one is copied
	 * before its write, the huge page whole.
	 */
	EXPECT_LE((unsigned long long)(11 + HPAGE / PAGE), g.shared_pages);
	EXPECT_LE((unsigned long long)(10 + HPAGE / PAGE), g.cbw_pages);
	EXPECT_EQ(0U, g.flags);

	kid_end(&k);
	close(f);
	close(thpf);
	close(mfd);
	shmdt(shm);
	shmctl(shmid, IPC_RMID, NULL);
	munmap(fm, 5 * PAGE);
	munmap(anon2, 2 * PAGE);
	munmap(thp, HPAGE);
	umount(TMPFS);
	umount(THPFS);
	free(s.pfns);
	free(t);
}

/* A stopped process of 8 MiB: the protection of each takes a while. */
static int ballast_setup(void *mem, unsigned long *pfn)
{
	unsigned char *m = mmap(NULL, 8UL << 20, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)mem;
	if (m == MAP_FAILED)
		return 1;
	memset(m, 1, 8UL << 20);
	pfn[0] = pfn_of(m);
	return 0;
}

static const struct kid_ops ballast_ops = { ballast_setup, NULL };

#define BALLAST 16
#define MAX_FORKS 1024

/*
 * The helper: once @start is readable, forks children until @stop is (or
 * MAX_FORKS of them). Child n waits for the end of @go, then reads page n of
 * @mem (a read fault maps it) and writes it. Reports how many it forked on
 * @rep once all have exited.
 */
static void forker(unsigned char *mem, int start, int go, int stop, int rep)
{
	unsigned long n = 0;
	char c;

	if (read(start, &c, 1) != 1)
		_exit(1);
	while (n < MAX_FORKS && read(stop, &c, 1) != 1) {
		pid_t pid = fork();

		if (pid < 0)
			break;
		if (pid == 0) {
			if (read(go, &c, 1) < 0 || touch(mem + n * PAGE, PAGE))
				_exit(1);
			pattern(mem + n * PAGE, PAGE, 172, n * PAGE);
			_exit(0);
		}
		n++;
	}
	while (wait(NULL) > 0)
		;
	_exit(write(rep, &n, sizeof(n)) == sizeof(n) ? 0 : 1);
}

/*
 * A helper continued after the freeze forks again and again during the
 * call; each child, once the call has returned, maps a page of shared memory
 * of its own by reading it and then writes it. A child forked while the
 * processes are protected, from a parent not protected yet, would copy its
 * writable vm_page_prot and never be protected itself: its read fault would
 * map the page writable, and its write would not tell the image. Sixteen
 * stopped processes of 8 MiB each come before the helper in the process
 * list, so that their protection takes a while. Every page is in the image
 * at its PFN with what it held at the atomic point; the children's writes
 * are seen.
 */
TEST_F_TIMEOUT(slow, forks_during_the_call_are_protected, 300)
{
	struct target *t = calloc(MAX_FORKS, sizeof(*t));
	struct stream s = { .t = t, .nr_t = MAX_FORKS };
	struct kid ballast[BALLAST] = { 0 };
	int start[2], go[2], stop[2], rep[2], frz, fd, i, status;
	unsigned long forked = 0, missed = 0, written = 0;
	unsigned char *mem;
	pid_t helper;

	ASSERT_NE(NULL, t);
	mem = shared(-1, MAX_FORKS * PAGE);
	ASSERT_NE(NULL, mem);
	pattern(mem, MAX_FORKS * PAGE, 171, 0);
	for (i = 0; i < MAX_FORKS; i++) {
		want(&t[i], pfn_of(mem + i * PAGE), 171, i * PAGE);
		ASSERT_NE(0UL, t[i].pfn);
	}
	for (i = 0; i < BALLAST; i++)
		ASSERT_EQ(0, kid_start(&ballast[i], &ballast_ops, NULL));
	ASSERT_EQ(0, pipe2(start, O_CLOEXEC));
	ASSERT_EQ(0, pipe2(go, 0));
	ASSERT_EQ(0, pipe2(stop, O_NONBLOCK));
	ASSERT_EQ(0, pipe2(rep, 0));
	helper = fork();
	ASSERT_LE(0, helper);
	if (helper == 0) {
		close(go[1]);
		forker(mem, start[0], go[0], stop[0], rep[1]);
	}
	close(go[0]);
	close(rep[1]);

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	ASSERT_EQ(1, write(start[1], "s", 1));
	ASSERT_EQ(0, kill(helper, SIGCONT));
	fd = sys_snapshot_kernel(0, 0);
	ASSERT_EQ(1, write(stop[1], "s", 1));
	close(go[1]);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
	ASSERT_EQ(helper, waitpid(helper, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	EXPECT_EQ((ssize_t)sizeof(forked), read(rep[0], &forked, sizeof(forked)));
	EXPECT_LT(0UL, forked);
	for (i = 0; i < (int)forked; i++)
		written += is_pattern(mem + i * PAGE, PAGE, 172, i * PAGE);
	EXPECT_EQ(forked, written) TH_LOG("%lu of %lu children's writes seen", written, forked);

	ASSERT_EQ(0, read_stream(fd, &s));
	close(fd);
	close(frz);
	for (i = 0; i < MAX_FORKS; i++) {
		if (t[i].seen && t[i].matched)
			continue;
		if (!missed++)
			TH_LOG("page %d (pfn %lu) %s", i, t[i].pfn, !t[i].seen ?
			       "is not in the image" : "holds a write made after the atomic point");
	}
	TH_LOG("the helper forked %lu children; %lu of %d pages not as at the atomic point",
	       forked, missed, MAX_FORKS);
	EXPECT_EQ(0UL, missed);
	for (i = 0; i < BALLAST; i++)
		kid_end(&ballast[i]);
	close(start[0]);
	close(start[1]);
	close(stop[0]);
	close(stop[1]);
	close(rep[0]);
	munmap(mem, MAX_FORKS * PAGE);
	free(s.pfns);
	free(t);
}

/* The pages an image copies now, with nothing else running; @g its geometry. */
static long long kernel_copy(struct hibsnap_geometry *g)
{
	int frz, fd;
	long long copied = -1;

	frz = sys_freeze_processes(0);
	if (frz < 0)
		return -1;
	fd = sys_snapshot_kernel(0, 0);
	if (fd >= 0) {
		if (!geometry(fd, g))
			copied = g->copied_pages;
		close(fd);
	} else {
		ksft_print_msg("snapshot_kernel: %s\n", strerror(errno));
	}
	close(frz);
	return copied;
}

/*
 * A mixed workload of at least 80% of RAM and no swap: private anonymous
 * memory, MAP_SHARED anonymous memory, a tmpfs file, SysV shm, and the page
 * cache of an ext4 file (read-only, so kept in place too). The image is
 * taken, and the copy of kernel memory is within a few percent of the same
 * boot's copy without the workload; every region is then still whole. (The
 * tool's round trip restores such a workload across a power-off:
 * hibsnap_roundtrip's memory cycle.)
 */
TEST_F_TIMEOUT(slow, mixed_workload_copies_only_kernel_memory, 300)
{
	long total_kb = meminfo_kb("MemTotal");
	size_t total = (size_t)total_kb * 1024, anon_len, sh_len, tmp_len, sysv_len, ext_len;
	unsigned char *anon_m, *sh_m, *tmp_m, *sysv_m, *ext_m;
	struct hibsnap_geometry g;
	long long before, after;
	int ef, shmid;
	long kb;

	if (meminfo_kb("SwapTotal") != 0)
		run(NULL, 0, "swapoff -a");
	ASSERT_EQ(0, meminfo_kb("SwapTotal"));
	/*
	 * An ext4 file on the small virtio disk (a RAM disk would be kernel
	 * memory), mounted read-only for the images (a writable filesystem
	 * must be on a dm-hibsnap device); its page cache is dropped here.
	 */
	ext_len = 8UL << 20;
	mkdir(EXTFS, 0755);
	ASSERT_EQ(0, run(NULL, 0, "/usr/sbin/mke2fs -q -F -t ext4 -b 4096 " EXT_DEV));
	ASSERT_EQ(0, mount(EXT_DEV, EXTFS, "ext4", 0, NULL));
	ext_m = new_file(EXTFS "/cache", ext_len);
	ASSERT_NE(NULL, ext_m);
	fill(ext_m, ext_len, 71);
	ASSERT_EQ(0, msync(ext_m, ext_len, MS_SYNC));
	ASSERT_EQ(0, munmap(ext_m, ext_len));
	ASSERT_EQ(0, umount(EXTFS));
	ASSERT_EQ(0, mount(EXT_DEV, EXTFS, "ext4", MS_RDONLY, NULL));
	ASSERT_EQ(0, write_str("/proc/sys/vm/drop_caches", "3"));
	before = kernel_copy(&g);
	ASSERT_LT(0, before);

	anon_len = total * 43 / 100 / HPAGE * HPAGE;
	sh_len = total * 13 / 100 / HPAGE * HPAGE;
	tmp_len = total * 12 / 100 / HPAGE * HPAGE;
	sysv_len = total * 12 / 100 / HPAGE * HPAGE;
	anon_m = mmap(NULL, anon_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, anon_m);
	fill(anon_m, anon_len, 72);
	sh_m = shared(-1, sh_len);
	ASSERT_NE(NULL, sh_m);
	fill(sh_m, sh_len, 73);
	ASSERT_EQ(0, tmpfs(TMPFS, "size=50%"));
	tmp_m = new_file(TMPFS "/mixed", tmp_len);
	ASSERT_NE(NULL, tmp_m);
	fill(tmp_m, tmp_len, 74);
	shmid = shmget(IPC_PRIVATE, sysv_len, IPC_CREAT | 0600);
	ASSERT_LE(0, shmid);
	sysv_m = shmat(shmid, NULL, 0);
	ASSERT_NE((void *)-1, sysv_m);
	fill(sysv_m, sysv_len, 75);
	/* The ext4 file read back into the page cache. */
	ef = open(EXTFS "/cache", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, ef);
	ext_m = mmap(NULL, ext_len, PROT_READ, MAP_SHARED, ef, 0);
	ASSERT_NE(MAP_FAILED, ext_m);
	ASSERT_TRUE(filled(ext_m, ext_len, 71));
	kb = (anon_len + sh_len + tmp_len + sysv_len + ext_len) >> 10;
	ksft_print_msg(MIXED_FMT, kb >> 10, kb * 100 / total_kb, total_kb >> 10, anon_len >> 20,
		       sh_len >> 20, tmp_len >> 20, sysv_len >> 20, ext_len >> 20);
	EXPECT_LE(80, kb * 100 / total_kb);

	after = kernel_copy(&g);
	ksft_print_msg(COPY_FMT, before, after,
		       before > 0 ? (after - before) * 100.0 / before : 0.0);
	EXPECT_LT(0, after);
	EXPECT_LE(after * 100, before * 105)
		TH_LOG("the copy grew with the workload: %lld -> %lld pages", before, after);
	ksft_print_msg(KEPT_FMT, g.cow_pages, g.shared_pages, g.denied_pages);
	EXPECT_LE((anon_len + sh_len + tmp_len + sysv_len + ext_len) / PAGE,
		  g.cow_pages + g.shared_pages + g.denied_pages);
	EXPECT_LE(ext_len / PAGE, g.denied_pages);
	EXPECT_TRUE(filled(anon_m, anon_len, 72));
	EXPECT_TRUE(filled(sh_m, sh_len, 73));
	EXPECT_TRUE(filled(tmp_m, tmp_len, 74));
	EXPECT_TRUE(filled(sysv_m, sysv_len, 75));
	EXPECT_TRUE(filled(ext_m, ext_len, 71));

	munmap(anon_m, anon_len);
	munmap(sh_m, sh_len);
	munmap(tmp_m, tmp_len);
	munmap(ext_m, ext_len);
	shmdt(sysv_m);
	shmctl(shmid, IPC_RMID, NULL);
	close(ef);
	umount(TMPFS);
	umount(EXTFS);
}

/*
 * A memfd page kept in place, then pinned after the atomic point by a
 * udmabuf (memfd_pin_folios()) and written through the dma-buf's own
 * mapping, which maps the pinned page by PFN: no fault on the memfd, no
 * write_begin. The image still reads the page as it was at the atomic
 * point: the pin copied it first.
 */
TEST_F_TIMEOUT(slow, udmabuf_pinned_after_the_call, 300)
{
	static const char *const name[] = { "memfd page pinned by a udmabuf" };
	struct target t = { 0 };
	struct stream s = { .t = &t, .nr_t = 1 };
	struct udmabuf_create create = { 0 };
	struct hibsnap_geometry g;
	unsigned char *m, *dm;
	int mfd, dev, buf, frz, fd;

	mfd = memfd_create("hsudmabuf", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ASSERT_LE(0, mfd);
	ASSERT_EQ(0, put(mfd, 2 * PAGE, 61, 0));
	ASSERT_EQ(0, fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK));
	m = shared(mfd, 2 * PAGE);
	ASSERT_NE(NULL, m);
	ASSERT_EQ(0, touch(m, 2 * PAGE));
	want(&t, pfn_of(m), 61, 0);
	ASSERT_EQ(0, munmap(m, 2 * PAGE));
	dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, dev) TH_LOG("/dev/udmabuf: %s (CONFIG_UDMABUF?)", strerror(errno));

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	fd = sys_snapshot_kernel(0, 0);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));

	/* After the atomic point: pinned, then written through the dma-buf. */
	create.memfd = mfd;
	create.flags = UDMABUF_FLAGS_CLOEXEC;
	create.size = 2 * PAGE;
	buf = ioctl(dev, UDMABUF_CREATE, &create);
	ASSERT_LE(0, buf) TH_LOG("UDMABUF_CREATE: %s", strerror(errno));
	dm = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	ASSERT_NE(MAP_FAILED, dm) TH_LOG("mmap of the dma-buf: %s", strerror(errno));
	pattern(dm, PAGE, 62, 0);
	EXPECT_TRUE(holds(mfd, PAGE, 62, 0)) TH_LOG("the memfd does not see the write");

	ASSERT_EQ(0, geometry(fd, &g));
	ASSERT_EQ(0, read_stream(fd, &s));
	close(fd);
	close(frz);
	TH_LOG("shared in place %llu, copied before a write %llu", g.shared_pages, g.cbw_pages);
	EXPECT_EQ(0, targets_missed(&t, 1, name));
	EXPECT_LE(1ULL, g.cbw_pages);
	munmap(dm, 2 * PAGE);
	close(buf);
	close(dev);
	close(mfd);
}

TEST_HARNESS_MAIN
