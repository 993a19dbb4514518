// SPDX-License-Identifier: GPL-2.0
/*
 * The atomic point of snapshot_kernel(2) holds, whoever writes afterwards:
 * user memory is copy-on-write, pages that cannot be are copied, and the
 * image stays valid once the freeze is released. See "Consistency" in
 * Documentation/power/hibsnap.rst.
 *
 * Each writer below writes a page after the call returned; the page must be
 * in the image at its PFN with what it held at the atomic point, while the
 * writer sees its own write.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/hibsnap.h>
#include <linux/io_uring.h>
#include <linux/kernel-page-flags.h>

#include "../kselftest_harness.h"
#include "hibsnap_util.h"
#include "hibsnap_image.h"

#define HPAGE (2UL << 20)
/*
 * Swap on dm-linear over /dev/ram2: a RAM disk alone is synchronous, and
 * swap-in from it bypasses the swap cache.
 */
#define SWAP_NAME "hscowswap"
#define SWAP_DEV "/dev/mapper/" SWAP_NAME
#define SWAP_ON "dmsetup create " SWAP_NAME " --table '0 131072 linear /dev/ram2 0' && " \
	"dmsetup mknodes " SWAP_NAME " && mkswap " SWAP_DEV " && swapon " SWAP_DEV
#define FUTEX_OWNER_DIED 0x40000000U
#define PAUSE_FMT "# interrupts off: %.1f ms with %zu MiB of user memory (%llu pages copied, %llu copy-on-write), %.1f ms with %zu MiB (%llu copied, %llu copy-on-write): %llu ns a copied page, %llu ns an extra copy-on-write page\n"

/* Only for TEST_F_TIMEOUT(): the long tests need more than the default 30 s. */
FIXTURE(slow) {
	int unused;
};

FIXTURE_SETUP(slow) {}
FIXTURE_TEARDOWN(slow) {}

/* A page-aligned private anonymous mapping of @len bytes. */
static void *anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* 1. A stopped task continued by a helper, writing its own memory. */
static int continued_setup(void *mem, unsigned long *pfn)
{
	unsigned char *m = anon(PAGE);

	if (!m)
		return 1;
	pattern(m, PAGE, 1, 0);
	*(unsigned char **)mem = m;
	pfn[0] = pfn_of(m);
	return 0;
}

/* A task writing its own page (1. and 7.). */
static int own_page_write(void *mem)
{
	unsigned char *m = *(unsigned char **)mem;

	pattern(m, PAGE, 101, 0);
	return is_pattern(m, PAGE, 101, 0);
}

/* 2. A stopped task whose memory (one page plain, one mlocked) another task writes. */
static int stopped_setup(void *mem, unsigned long *pfn)
{
	unsigned char *m = anon(2 * PAGE);

	if (!m || mlock(m + PAGE, PAGE))
		return 1;
	pattern(m, 2 * PAGE, 2, 0);
	*(unsigned char **)mem = m;
	pfn[0] = pfn_of(m);
	pfn[1] = pfn_of(m + PAGE);
	pfn[2] = (unsigned long)m;
	return 0;
}

/* 3. A ptrace-stopped tracee whose memory its tracer pokes. */
static int tracee_setup(void *mem, unsigned long *pfn)
{
	unsigned char *m = anon(PAGE);

	(void)mem;
	if (!m)
		return 1;
	pattern(m, PAGE, 3, 0);
	pfn[0] = pfn_of(m);
	pfn[1] = (unsigned long)m;
	return 0;
}

/* 4. A task killed after the atomic point: its exit marks its robust mutex. */
static int robust_setup(void *mem, unsigned long *pfn)
{
	pthread_mutexattr_t attr;
	pthread_mutex_t *mx = mem;

	if (!mx)
		mx = anon(PAGE);
	if (!mx || pthread_mutexattr_init(&attr) ||
	    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) ||
	    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) ||
	    pthread_mutex_init(mx, &attr) || pthread_mutex_lock(mx))
		return 1;
	pfn[0] = pfn_of(mx);
	pfn[1] = (unsigned long)mx;
	return 0;
}

/* 5. A transparent huge page, one 4 KiB page of it written. */
static int thp_setup(void *mem, unsigned long *pfn)
{
	unsigned char *raw = anon(2 * HPAGE), *m;

	if (!raw)
		return 1;
	m = (unsigned char *)(((uintptr_t)raw + HPAGE - 1) & ~(HPAGE - 1));
	madvise(m, HPAGE, MADV_HUGEPAGE);
	pattern(m, HPAGE, 5, 0);
	*(unsigned char **)mem = m;
	pfn[0] = pfn_of(m);
	pfn[1] = pfn_of(m + HPAGE / 2);
	pfn[2] = pfn_of(m + HPAGE - PAGE);
	return 0;
}

static int thp_write(void *mem)
{
	unsigned char *m = *(unsigned char **)mem;

	pattern(m + HPAGE / 2, PAGE, 105, HPAGE / 2);
	return is_pattern(m + HPAGE / 2, PAGE, 105, HPAGE / 2) &&
	       is_pattern(m, HPAGE / 2, 5, 0) &&
	       is_pattern(m + HPAGE / 2 + PAGE, HPAGE / 2 - PAGE, 5, HPAGE / 2 + PAGE);
}

/*
 * 6. A private file mapping of a file on ext4: page 0 only read (the page
 * cache page is mapped), page 1 written before the call (a private copy).
 */
static int file_setup(void *mem, unsigned long *pfn)
{
	int fd = open("/mnt/cow", O_RDONLY | O_CLOEXEC);
	unsigned char *m;

	if (fd < 0)
		return 1;
	m = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED || !is_pattern(m, PAGE, 6, 0))
		return 1;
	pattern(m + PAGE, PAGE, 8, PAGE);
	*(unsigned char **)mem = m;
	pfn[0] = pfn_of(m);
	pfn[1] = pfn_of(m + PAGE);
	return 0;
}

static int file_write(void *mem)
{
	unsigned char *m = *(unsigned char **)mem;

	pattern(m, 2 * PAGE, 109, 0);
	return is_pattern(m, 2 * PAGE, 109, 0);
}

/* 7. A page read back from swap, so in the swap cache, at the atomic point. */
static int swapcache_setup(void *mem, unsigned long *pfn)
{
	unsigned char *m = anon(PAGE);

	if (!m)
		return 1;
	pattern(m, PAGE, 11, 0);
	/* Out to swap, and back in by reading it. */
	if (madvise(m, PAGE, MADV_PAGEOUT) || !is_pattern(m, PAGE, 11, 0))
		return 1;
	*(unsigned char **)mem = m;
	pfn[0] = pfn_of(m);
	return 0;
}

static const struct kid_ops continued_ops = { continued_setup, own_page_write };
static const struct kid_ops stopped_ops = { stopped_setup, NULL };
static const struct kid_ops tracee_ops = { tracee_setup, NULL };
static const struct kid_ops robust_ops = { robust_setup, NULL };
static const struct kid_ops thp_ops = { thp_setup, thp_write };
static const struct kid_ops file_ops = { file_setup, file_write };
static const struct kid_ops swapcache_ops = { swapcache_setup, own_page_write };

enum { T_CONT, T_PLAIN, T_MLOCK, T_TRACEE, T_ROBUST, T_THP0, T_THP1, T_THP2, T_FCACHE, T_FANON,
	T_SWAPC, T_MINE, NR_T };

static const char *const t_name[NR_T] = {
	"continued task, its own page",
	"stopped task, page written by process_vm_writev",
	"stopped task, mlocked page written by process_vm_writev",
	"tracee, page poked by its tracer",
	"killed task, robust mutex marked by its exit",
	"THP, first page",
	"THP, page written",
	"THP, last page",
	"private file mapping, page-cache page",
	"private file mapping, own copy",
	"swap-cache page",
	"the caller's own page",
};

/*
 * Seven writers after the atomic point, and the caller: each page is in the
 * image at its PFN with its atomic-point contents, and each writer sees its
 * write. The pages that could not be kept in place are counted by class.
 */
TEST_F_TIMEOUT(slow, writers_after_atomic_point, 300)
{
	struct kid cont = { 0 }, stopped = { 0 }, tracee = { 0 }, robust = { 0 }, thp = { 0 },
		   file = { 0 }, swapc = { 0 };
	struct target *t = calloc(NR_T, sizeof(*t));
	struct stream s = { .t = t, .nr_t = NR_T };
	struct hibsnap_geometry g;
	unsigned char buf[PAGE], *mine, *shared_mx;
	struct iovec local, remote;
	unsigned int word;
	uint64_t flags;
	int frz, fd, status, i;
	void *mem = NULL;
	long peek;

	ASSERT_NE(NULL, t);
	ASSERT_EQ(0, mount_fresh_ext4());
	fd = open("/mnt/cow", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	pattern(buf, PAGE, 6, 0);
	ASSERT_EQ((ssize_t)PAGE, pwrite(fd, buf, PAGE, 0));
	pattern(buf, PAGE, 7, PAGE);
	ASSERT_EQ((ssize_t)PAGE, pwrite(fd, buf, PAGE, PAGE));
	ASSERT_EQ(0, fsync(fd));
	close(fd);
	ASSERT_EQ(0, run(NULL, 0, SWAP_ON));

	ASSERT_EQ(0, kid_start(&cont, &continued_ops, &mem));
	ASSERT_EQ(0, kid_start(&stopped, &stopped_ops, &mem));
	ASSERT_EQ(0, kid_start(&tracee, &tracee_ops, &mem));
	ASSERT_EQ(0, kid_start(&robust, &robust_ops, NULL));
	ASSERT_EQ(0, kid_start(&thp, &thp_ops, &mem));
	ASSERT_EQ(0, kid_start(&file, &file_ops, &mem));
	ASSERT_EQ(0, kid_start(&swapc, &swapcache_ops, &mem));
	ASSERT_EQ(0, ptrace(PTRACE_ATTACH, tracee.pid, 0, 0));
	ASSERT_EQ(tracee.pid, waitpid(tracee.pid, &status, 0));
	ASSERT_TRUE(WIFSTOPPED(status));

	want(&t[T_CONT], cont.pfn[0], 1, 0);
	want(&t[T_PLAIN], stopped.pfn[0], 2, 0);
	want(&t[T_MLOCK], stopped.pfn[1], 2, PAGE);
	want(&t[T_TRACEE], tracee.pfn[0], 3, 0);
	t[T_ROBUST].pfn = robust.pfn[0];
	want(&t[T_THP0], thp.pfn[0], 5, 0);
	want(&t[T_THP1], thp.pfn[1], 5, HPAGE / 2);
	want(&t[T_THP2], thp.pfn[2], 5, HPAGE - PAGE);
	want(&t[T_FCACHE], file.pfn[0], 6, 0);
	want(&t[T_FANON], file.pfn[1], 8, PAGE);
	want(&t[T_SWAPC], swapc.pfn[0], 11, 0);
	mine = anon(PAGE);
	ASSERT_NE(NULL, mine);
	pattern(mine, PAGE, 12, 0);
	want(&t[T_MINE], pfn_of(mine), 12, 0);
	for (i = 0; i < NR_T && t[i].pfn; i++)
		;
	ASSERT_EQ(NR_T, i) TH_LOG("no PFN for target %d", i);
	flags = page_flags(thp.pfn[1]);
	ASSERT_TRUE(!!(flags & (1ULL << KPF_THP)))
		TH_LOG("not a THP: flags %#llx", (unsigned long long)flags);
	flags = page_flags(swapc.pfn[0]);
	ASSERT_TRUE(!!(flags & (1ULL << KPF_SWAPCACHE)))
		TH_LOG("not in the swap cache: flags %#llx", (unsigned long long)flags);

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	/*
	 * The robust mutex's word before the atomic point: the owner's TID. The
	 * stopped child is read through /proc; its lock word is at offset 0.
	 */
	local.iov_base = &word;
	local.iov_len = sizeof(word);
	remote.iov_base = (void *)robust.pfn[1];
	remote.iov_len = sizeof(word);
	ASSERT_EQ((ssize_t)sizeof(word), process_vm_readv(robust.pid, &local, 1, &remote, 1, 0));
	EXPECT_EQ((unsigned int)robust.pid, word & 0x3fffffff);
	memset(t[T_ROBUST].expect, 0, PAGE);
	remote.iov_len = PAGE;
	local.iov_base = t[T_ROBUST].expect;
	local.iov_len = PAGE;
	ASSERT_EQ((ssize_t)PAGE, process_vm_readv(robust.pid, &local, 1, &remote, 1, 0));

	fd = sys_snapshot_kernel(0, 0);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));

	/* The writers, after the atomic point. */
	pattern(mine, PAGE, 112, 0);
	EXPECT_EQ(1, kid_write(&cont));
	pattern(buf, PAGE, 102, 0);
	local.iov_base = buf;
	local.iov_len = PAGE;
	remote.iov_len = PAGE;
	for (i = 0; i < 2; i++) {
		remote.iov_base = (void *)(stopped.pfn[2] + i * PAGE);
		EXPECT_EQ((ssize_t)PAGE, process_vm_writev(stopped.pid, &local, 1, &remote, 1, 0));
	}
	EXPECT_EQ((ssize_t)PAGE, process_vm_readv(stopped.pid, &local, 1, &remote, 1, 0));
	EXPECT_TRUE(is_pattern(buf, PAGE, 102, 0)) TH_LOG("process_vm_writev not seen");
	EXPECT_EQ('T', proc_state(stopped.pid));
	EXPECT_EQ(0, ptrace(PTRACE_POKEDATA, tracee.pid, (void *)tracee.pfn[1], 0x5a5a5a5aL));
	errno = 0;
	peek = ptrace(PTRACE_PEEKDATA, tracee.pid, (void *)tracee.pfn[1], 0);
	EXPECT_EQ(0, errno);
	EXPECT_EQ(0x5a5a5a5aL, peek);
	kill(robust.pid, SIGKILL);
	EXPECT_EQ(robust.pid, waitpid(robust.pid, NULL, 0));
	robust.pid = 0;
	EXPECT_EQ(1, kid_write(&thp));
	EXPECT_EQ(1, kid_write(&file));
	EXPECT_EQ(1, kid_write(&swapc));

	ASSERT_EQ(0, geometry(fd, &g));
	ASSERT_EQ(0, read_stream(fd, &s));
	close(fd);
	close(frz);
	TH_LOG("copied %llu, in place %llu (copy-on-write %llu, page cache %llu), zero %llu",
	       g.copied_pages, g.streamed_pages, g.cow_pages, g.denied_pages, g.zero_pages);
	TH_LOG("user pages copied: pinned %llu, swap cache %llu, exclusive %llu",
	       g.pinned_pages, g.swapcache_pages, g.exclusive_pages);
	EXPECT_EQ(0, targets_missed(t, NR_T, t_name));
	EXPECT_LT(0ULL, g.cow_pages);
	EXPECT_LT(0ULL, g.denied_pages);
	EXPECT_LE(1ULL, g.swapcache_pages);
	EXPECT_EQ(0U, g.flags);

	/* The exit does write the robust mutex: seen here in a shared page. */
	shared_mx = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, shared_mx);
	robust = (struct kid){ 0 };
	ASSERT_EQ(0, kid_start(&robust, &robust_ops, shared_mx));
	kill(robust.pid, SIGKILL);
	waitpid(robust.pid, NULL, 0);
	robust.pid = 0;
	memcpy(&word, shared_mx, sizeof(word));
	EXPECT_TRUE(!!(word & FUTEX_OWNER_DIED)) TH_LOG("robust mutex word %#x after exit", word);

	kid_end(&cont);
	kid_end(&stopped);
	kid_end(&tracee);
	kid_end(&robust);
	kid_end(&thp);
	kid_end(&file);
	kid_end(&swapc);
	EXPECT_EQ(0, run(NULL, 0, "swapoff " SWAP_DEV " && dmsetup remove " SWAP_NAME));
	umount("/mnt");
	free(s.pfns);
	free(t);
}

/* A thread of the caller rewriting a THP, one generation a pass. */
struct rewriter {
	uint64_t *m;
	uint64_t gen;
	int stop;
};

static void *rewrite_thp(void *arg)
{
	struct rewriter *w = arg;

	while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED)) {
		uint64_t gen = __atomic_add_fetch(&w->gen, 1, __ATOMIC_RELAXED);

		for (size_t i = 0; i < HPAGE / PAGE; i++)
			__atomic_store_n(&w->m[i * PAGE / sizeof(*w->m)], gen, __ATOMIC_RELAXED);
	}
	return NULL;
}

/*
 * A PMD-mapped THP that a thread of the caller rewrites throughout the call,
 * pass after pass, each pass stamping every 4 KiB page with its number: its
 * write faults after the protection reuse the THP and map it writable again,
 * and mm marks only the head page exclusive then. After the call returns the
 * thread stops and the THP is stamped once more with ~0. In the image, at the
 * THP's PFNs, all 512 pages hold what they held at one instant: pass G on
 * the first pages, pass G - 1 on the rest, none ~0.
 */
TEST_F_TIMEOUT(slow, thp_rewritten_through_the_call, 300)
{
	const size_t nr = HPAGE / PAGE;
	struct target *t = calloc(nr, sizeof(*t));
	struct stream s = { .t = t, .nr_t = (int)nr };
	struct rewriter w = { 0 };
	unsigned long pfn, missed = 0, after = 0, steps = 0;
	unsigned char *raw;
	pthread_t thread;
	uint64_t flags;
	int frz, fd;
	size_t i;

	ASSERT_NE(NULL, t);
	raw = anon(2 * HPAGE);
	ASSERT_NE(NULL, raw);
	w.m = (uint64_t *)(((uintptr_t)raw + HPAGE - 1) & ~(HPAGE - 1));
	ASSERT_EQ(0, madvise(w.m, HPAGE, MADV_HUGEPAGE));
	memset(w.m, 0x5a, HPAGE);
	pfn = pfn_of(w.m);
	ASSERT_NE(0UL, pfn);
	flags = page_flags(pfn);
	ASSERT_TRUE(!!(flags & (1ULL << KPF_THP)))
		TH_LOG("not a THP: flags %#llx", (unsigned long long)flags);
	ASSERT_EQ(pfn + nr - 1, pfn_of((unsigned char *)w.m + HPAGE - PAGE));
	for (i = 0; i < nr; i++)
		t[i].pfn = pfn + i;
	ASSERT_EQ(0, pthread_create(&thread, NULL, rewrite_thp, &w));
	while (__atomic_load_n(&w.gen, __ATOMIC_RELAXED) < 2)
		;

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	fd = sys_snapshot_kernel(0, 0);
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELAXED);
	ASSERT_EQ(0, pthread_join(thread, NULL));
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
	for (i = 0; i < nr; i++)
		w.m[i * PAGE / sizeof(*w.m)] = ~0ULL;

	ASSERT_EQ(0, read_stream(fd, &s));
	close(fd);
	close(frz);
	for (i = 0; i < nr; i++) {
		if (!t[i].seen)
			missed++;
		else if (t[i].word == ~0ULL)
			after++;
		else if (i && t[i].word != t[i - 1].word)
			steps += t[i].word + 1 == t[i - 1].word ? 1 : nr;
	}
	TH_LOG("%llu passes; in the image: first page %llu, last page %llu",
	       (unsigned long long)w.gen, (unsigned long long)t[0].word,
	       (unsigned long long)t[nr - 1].word);
	EXPECT_EQ(0UL, missed) TH_LOG("%lu of the THP's pages not in the image", missed);
	EXPECT_EQ(0UL, after)
		TH_LOG("%lu of the THP's pages hold the write made after the call", after);
	EXPECT_GE(1UL, steps) TH_LOG("the THP's pages are not from one instant");
	munmap(raw, 2 * HPAGE);
	free(s.pfns);
	free(t);
}

/* A thread of the caller collapsing regions of small pages into THPs, pass after pass. */
struct collapser {
	unsigned char *m;
	int nr, go, stop;
	unsigned long ok, again, other;	/* MADV_COLLAPSE's results */
	int error;			/* the errno of the last "other" */
};

static void *collapse_regions(void *arg)
{
	struct collapser *c = arg;

	while (!__atomic_load_n(&c->go, __ATOMIC_ACQUIRE))
		;
	while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
		for (int i = 0; i < c->nr; i++) {
			if (!madvise(c->m + i * HPAGE, HPAGE, MADV_COLLAPSE)) {
				c->ok++;
			} else if (errno == EAGAIN) {
				c->again++;
			} else {
				c->other++;
				c->error = errno;
			}
		}
	}
	return NULL;
}

#define NR_COLLAPSE 64

/*
 * 64 regions of 2 MiB, aligned and populated with 4 KiB pages, that a
 * thread of the caller collapses into THPs (MADV_COLLAPSE) from just before
 * the call to after it. A collapse after the processes are protected maps a
 * new exclusive THP writable, which the atomic point would copy: 512 pages
 * more than the reserve counted, for each. The kernel refuses them with
 * EAGAIN until the atomic point (after it, the image's references make them
 * fail too): no anonymous page is copied as exclusive but the few the caller
 * writes itself (its stack) meanwhile.
 */
TEST_F_TIMEOUT(slow, collapse_refused_until_the_atomic_point, 300)
{
	struct collapser c = { .nr = NR_COLLAPSE };
	size_t len = NR_COLLAPSE * HPAGE;
	struct hibsnap_geometry g;
	unsigned char *raw;
	pthread_t thread;
	int frz, fd, i, thps = 0;

	raw = anon(len + HPAGE);
	ASSERT_NE(NULL, raw);
	c.m = (unsigned char *)(((uintptr_t)raw + HPAGE - 1) & ~(HPAGE - 1));
	ASSERT_EQ(0, madvise(c.m, len, MADV_NOHUGEPAGE));
	memset(c.m, 0x5a, len);
	ASSERT_EQ(0, madvise(c.m, len, MADV_HUGEPAGE));
	for (i = 0; i < NR_COLLAPSE; i++)
		ASSERT_FALSE(!!(page_flags(pfn_of(c.m + i * HPAGE)) & (1ULL << KPF_THP)))
			TH_LOG("region %d is a THP already", i);
	ASSERT_EQ(0, pthread_create(&thread, NULL, collapse_regions, &c));

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	__atomic_store_n(&c.go, 1, __ATOMIC_RELEASE);
	fd = sys_snapshot_kernel(0, 0);
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELAXED);
	ASSERT_EQ(0, pthread_join(thread, NULL));
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
	ASSERT_EQ(0, geometry(fd, &g));
	close(fd);
	close(frz);
	for (i = 0; i < NR_COLLAPSE; i++)
		thps += !!(page_flags(pfn_of(c.m + i * HPAGE)) & (1ULL << KPF_THP));
	TH_LOG("MADV_COLLAPSE: %lu done (or a THP already), %lu EAGAIN, %lu other",
	       c.ok, c.again, c.other);
	TH_LOG("%d of %d regions THPs; exclusive pages copied %llu", thps, NR_COLLAPSE,
	       g.exclusive_pages);
	EXPECT_GT((unsigned long long)HPAGE / PAGE, g.exclusive_pages)
		TH_LOG("a THP collapsed after the protection was copied at the atomic point");
	EXPECT_LT(0UL, c.again) TH_LOG("no collapse was refused");
	EXPECT_EQ(0UL, c.other) TH_LOG("MADV_COLLAPSE: %s", strerror(c.error));
	munmap(raw, len + HPAGE);
}

/* Memory of a child that holds a large region. */
struct big {
	unsigned char *m;
	size_t len;
};

/* A child holding a large region of non-zero anonymous memory; 8 PFNs across it. */
static int big_setup(void *mem, unsigned long *pfn)
{
	struct big *b = mem;

	b->m = anon(b->len);
	if (!b->m)
		return 1;
	fill(b->m, b->len, 21);
	for (int i = 0; i < 8; i++)
		pfn[i] = pfn_of(b->m + b->len / 8 * i);
	return 0;
}

static int big_rewrite(void *mem)
{
	struct big *b = mem;

	fill(b->m, b->len, 22);
	return filled(b->m, b->len, 22);
}

static const struct kid_ops big_ops = { big_setup, big_rewrite };

/* The flags of the image's geometry, or ~0U. */
static unsigned int geometry_flags(int fd)
{
	struct hibsnap_geometry g;

	return geometry(fd, &g) ? ~0U : g.flags;
}

/*
 * A buffer that io_uring has pinned (IORING_REGISTER_BUFFERS: FOLL_PIN |
 * FOLL_LONGTERM) is copied at the atomic point and counted as pinned; the
 * CPU and a direct-I/O read then write it in place, and the image keeps the
 * atomic-point contents.
 */
TEST_F_TIMEOUT(slow, dma_pinned_buffer_is_copied, 300)
{
	const size_t len = 16 * PAGE;
	struct io_uring_params params = { 0 };
	struct target *t = calloc(2, sizeof(*t));
	struct stream s = { .t = t, .nr_t = 2 };
	struct hibsnap_geometry g;
	unsigned char *buf = anon(len), *disk = aligned_alloc(PAGE, len);
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	int ring, frz, fd, dio;

	ASSERT_NE(NULL, t);
	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, disk);
	pattern(buf, len, 31, 0);
	pattern(disk, len, 32, 0);
	ASSERT_EQ(0, pio("/dev/ram3", 1, disk, len, 0));
	ring = syscall(__NR_io_uring_setup, 4, &params);
	ASSERT_LE(0, ring) TH_LOG("io_uring_setup: %s", strerror(errno));
	ASSERT_EQ(0, syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, &iov, 1))
		TH_LOG("IORING_REGISTER_BUFFERS: %s", strerror(errno));
	want(&t[0], pfn_of(buf), 31, 0);
	want(&t[1], pfn_of(buf + len - PAGE), 31, len - PAGE);

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	fd = sys_snapshot_kernel(0, 0);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
	/* Still the same pages, still pinned: written in place. */
	EXPECT_EQ(t[0].pfn, pfn_of(buf));
	pattern(buf, PAGE, 33, 0);
	dio = open("/dev/ram3", O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, dio);
	EXPECT_EQ((ssize_t)PAGE, pread(dio, buf + len - PAGE, PAGE, len - PAGE));
	close(dio);
	EXPECT_EQ(t[1].pfn, pfn_of(buf + len - PAGE));
	EXPECT_TRUE(is_pattern(buf, PAGE, 33, 0));
	EXPECT_TRUE(is_pattern(buf + len - PAGE, PAGE, 32, len - PAGE));
	ASSERT_EQ(0, geometry(fd, &g));
	ASSERT_EQ(0, read_stream(fd, &s));
	close(fd);
	close(frz);
	close(ring);
	TH_LOG("pinned %llu, exclusive %llu, copy-on-write %llu pages", g.pinned_pages,
	       g.exclusive_pages, g.cow_pages);
	EXPECT_LE(len / PAGE, g.pinned_pages);
	EXPECT_TRUE(t[0].seen && t[0].matched) TH_LOG("first page, written by the CPU");
	EXPECT_TRUE(t[1].seen && t[1].matched) TH_LOG("last page, written by direct I/O");
	munmap(buf, len);
	free(disk);
	free(s.pfns);
	free(t);
}

/*
 * The image without the freeze: released right after the call, a stopped
 * child and the caller rewrite 256 MiB between them and a file is written
 * on the dm-hibsnap device; the whole image then reads with the atomic
 * point's contents, and at close the file reaches the origin.
 */
TEST_F_TIMEOUT(slow, image_valid_after_release, 300)
{
	const size_t len = 128UL << 20;
	struct target *t = calloc(16, sizeof(*t));
	struct stream s = { .t = t, .nr_t = 16 };
	struct big kid_mem = { .len = len };
	unsigned char *mine = anon(len);
	unsigned char *w = aligned_alloc(PAGE, 1 << 20), *r = aligned_alloc(PAGE, 1 << 20);
	struct kid k = { 0 };
	int frz, fd, ffd, i, blk = 0;

	ASSERT_NE(NULL, t);
	ASSERT_NE(NULL, mine);
	ASSERT_NE(NULL, w);
	ASSERT_NE(NULL, r);
	ASSERT_EQ(0, mount_fresh_ext4());
	fill(mine, len, 23);
	ASSERT_EQ(0, kid_start(&k, &big_ops, &kid_mem));
	for (i = 0; i < 8; i++) {
		t[i].pfn = k.pfn[i];
		memset(t[i].expect, fill_byte(21, len / 8 * i / PAGE), PAGE);
	}
	for (i = 8; i < 16; i++) {
		size_t page = len / PAGE / 8 * (i - 8) + 3;

		t[i].pfn = pfn_of(mine + page * PAGE);
		memset(t[i].expect, fill_byte(23, page), PAGE);
	}

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	EXPECT_EQ('T', proc_state(k.pid));
	fd = sys_snapshot_kernel(0, 0);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
	close(frz);

	/* Everything runs and writes. */
	EXPECT_EQ(1, kid_write(&k));
	fill(mine, len, 24);
	EXPECT_TRUE(filled(mine, len, 24));
	pattern(w, 1 << 20, 25, 0);
	ffd = open("/mnt/meanwhile", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_LE(0, ffd);
	ASSERT_EQ(1 << 20, write(ffd, w, 1 << 20));
	ASSERT_EQ(0, fsync(ffd));
	/* Where its first block is on the device: not on the origin yet. */
	ASSERT_EQ(0, ioctl(ffd, FIBMAP, &blk));
	close(ffd);
	ASSERT_LT(0, blk);
	ASSERT_EQ(0, pio(BOOT_ORIGIN, 0, r, PAGE, (off_t)blk * PAGE));
	EXPECT_NE(0, memcmp(w, r, PAGE)) TH_LOG("the write reached the origin with the image open");

	EXPECT_EQ(0U, geometry_flags(fd));
	ASSERT_EQ(0, read_stream(fd, &s));
	for (i = 0; i < 16; i++) {
		const struct target *ti = &t[i];

		EXPECT_TRUE(ti->seen && ti->matched)
			TH_LOG("target %d (pfn %lu): %s", i, ti->pfn,
			       ti->seen ? "changed after the atomic point" : "not in the image");
	}
	close(fd);
	kid_end(&k);

	/* At close the kept writes went to the origin: the file is there. */
	ASSERT_EQ(0, pio(BOOT_ORIGIN, 0, r, PAGE, (off_t)blk * PAGE));
	EXPECT_EQ(0, memcmp(w, r, PAGE)) TH_LOG("the write did not reach the origin at close");
	EXPECT_EQ(0, boot_dm_file_is("meanwhile", w, 1 << 20));
	munmap(mine, len);
	free(w);
	free(r);
	free(s.pfns);
	free(t);
}

/*
 * Memory used up by the image's copies while it is open, half of RAM kept in
 * place and rewritten: private anonymous memory, whose copy-on-write faults
 * make the OOM notifier give the reserve back and then drop the image, and
 * shared memory, whose copies before writes take the reserve and then free
 * memory until none is left and the image is dropped. Either way the image
 * is dropped (HIBSNAP_GEOMETRY_DROPPED, read() fails with ENOMEM), the writer
 * finishes with its data whole, nobody is OOM-killed, and once the image is
 * closed its memory is back and the next image works.
 */
FIXTURE(exhaust) {
	int unused;
};

FIXTURE_VARIANT(exhaust) {
	int flags;			/* of the region's mapping */
	unsigned long overhead;		/* pages reserved for the copies */
	const char *log[2];		/* what the kernel log must say */
};

FIXTURE_VARIANT_ADD(exhaust, copy_on_write) {
	.flags = MAP_PRIVATE | MAP_ANONYMOUS,
	.overhead = 256,
	.log = { "overhead pages given back", "image dropped" },
};

FIXTURE_VARIANT_ADD(exhaust, copy_before_write) {
	.flags = MAP_SHARED | MAP_ANONYMOUS,
	.overhead = 16,
	.log = { "out of memory for a copy of shared memory before a write", "image dropped" },
};

FIXTURE_SETUP(exhaust) {}
FIXTURE_TEARDOWN(exhaust) {}

TEST_F_TIMEOUT(exhaust, drops_image, 300)
{
	long total_kb = meminfo_kb("MemTotal"), kills;
	size_t len = (size_t)total_kb * 1024 / 2 / HPAGE * HPAGE;
	const char *const *log = variant->log;
	unsigned char *mine, c;
	int frz, fd, fd2;

	if (meminfo_kb("SwapTotal") != 0)
		run(NULL, 0, "swapoff -a");
	ASSERT_EQ(0, meminfo_kb("SwapTotal"));
	mine = mmap(NULL, len, PROT_READ | PROT_WRITE, variant->flags, -1, 0);
	ASSERT_NE(MAP_FAILED, mine);
	fill(mine, len, 26);
	kills = proc_number("/proc/vmstat", "oom_kill", ' ');

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	fd = sys_snapshot_kernel(variant->overhead, 0);
	ASSERT_LE(0, fd) TH_LOG("snapshot_kernel: %s", strerror(errno));
	close(frz);
	EXPECT_EQ(1, read(fd, &c, 1));

	/* Half of RAM held by the image and rewritten: it cannot all fit. */
	fill(mine, len, 27);
	EXPECT_TRUE(filled(mine, len, 27));
	EXPECT_EQ(kills, proc_number("/proc/vmstat", "oom_kill", ' '))
		TH_LOG("a task was OOM-killed");
	EXPECT_EQ((unsigned int)HIBSNAP_GEOMETRY_DROPPED, geometry_flags(fd));
	errno = 0;
	EXPECT_EQ(-1, read(fd, &c, 1));
	EXPECT_EQ(ENOMEM, errno);
	EXPECT_TRUE(kmsg_has(log[0])) TH_LOG("no \"%s\" in the kernel log", log[0]);
	EXPECT_TRUE(kmsg_has(log[1])) TH_LOG("no \"%s\" in the kernel log", log[1]);
	close(fd);
	EXPECT_TRUE(filled(mine, len, 27));
	munmap(mine, len);

	frz = sys_freeze_processes(0);
	ASSERT_LE(0, frz);
	fd2 = sys_snapshot_kernel(0, 0);
	EXPECT_LE(0, fd2) TH_LOG("next snapshot_kernel: %s", strerror(errno));
	if (fd2 >= 0) {
		EXPECT_EQ(0U, geometry_flags(fd2));
		EXPECT_LT(0, drain(fd2, NULL));
		close(fd2);
	}
	close(frz);
}

/*
 * User memory is not copied at the atomic point, and it costs the time with
 * interrupts off far less than copying would. A stopped child of 100 MiB, then
 * one of 700 MiB, in the same boot, twice each, the shorter pause of the two
 * kept: the second size copies no more pages than the first (give or take
 * 1024 of the kernel's own), and each of its extra copy-on-write pages adds
 * less than a quarter of what one copied page costs. The pages kept in place
 * are still visited with interrupts off (a reference and a bit each), so the
 * pause does grow a little; under TCG the same snapshot's pause varies by
 * half from one run to the next, which a ratio of two pauses cannot tell from
 * growth, but a cost per page 4 times below a copy's can.
 */
TEST_F_TIMEOUT(slow, atomic_pause_grows_far_less_than_copying, 300)
{
	const size_t sizes[2] = { 100UL << 20, 700UL << 20 };
	unsigned long long ns[2] = { ~0ULL, ~0ULL }, cow[2], copied[2];
	unsigned long long per_copy, per_cow;
	struct hibsnap_geometry g;
	int frz, fd, i, round;

	run(NULL, 0, "blkdiscard /dev/ram0; blkdiscard /dev/ram2; blkdiscard /dev/ram3");
	for (round = 0; round < 4; round++) {
		struct big kid_mem = { .len = sizes[round % 2] };
		struct kid k = { 0 };

		i = round % 2;
		ASSERT_EQ(0, kid_start(&k, &big_ops, &kid_mem));
		frz = sys_freeze_processes(0);
		ASSERT_LE(0, frz);
		fd = sys_snapshot_kernel(0, 0);
		ASSERT_LE(0, fd) TH_LOG("%zu MiB: snapshot_kernel: %s", sizes[i] >> 20,
					strerror(errno));
		ASSERT_EQ(0, geometry(fd, &g));
		ASSERT_LT(0ULL, g.atomic_ns);
		if (g.atomic_ns < ns[i]) {
			ns[i] = g.atomic_ns;
			cow[i] = g.cow_pages;
			copied[i] = g.copied_pages;
		}
		close(fd);
		close(frz);
		kid_end(&k);
	}
	ASSERT_LE(sizes[1] / PAGE, cow[1]);
	ASSERT_LT(cow[0], cow[1]);
	per_cow = ns[1] > ns[0] ? (ns[1] - ns[0]) / (cow[1] - cow[0]) : 0;
	/* What is left of the first pause without its copy-on-write pages. */
	ASSERT_LT(cow[0] * per_cow, ns[0]);
	ASSERT_LT(0ULL, copied[0]);
	per_copy = (ns[0] - cow[0] * per_cow) / copied[0];
	printf(PAUSE_FMT, ns[0] / 1e6, sizes[0] >> 20, copied[0], cow[0], ns[1] / 1e6,
	       sizes[1] >> 20, copied[1], cow[1], per_copy, per_cow);
	EXPECT_LE(copied[1], copied[0] + 1024)
		TH_LOG("%llu more pages copied with %zu MiB more user memory",
		       copied[1] - copied[0], (sizes[1] - sizes[0]) >> 20);
	EXPECT_LT(per_cow * 4, per_copy);
}

TEST_HARNESS_MAIN
