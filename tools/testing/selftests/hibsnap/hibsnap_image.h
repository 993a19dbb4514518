/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Reading a hibsnap image in the hibsnap kselftests, as the kernel's loader
 * does: a header page (struct swsusp_info), the PFN list (bit 63: an all-zero
 * page without data), then one data page per other PFN, in order. Pages to
 * look for are given as targets: a PFN (from /proc/self/pagemap; the tests
 * run as root) and the contents it must have.
 */

#ifndef __HIBSNAP_IMAGE_H
#define __HIBSNAP_IMAGE_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/hibsnap.h>

#include "../kselftest.h"
#include "hibsnap_util.h"

#define PAGE 4096UL
#define CHUNK (4UL << 20)
#define PFN_ZERO (~0UL ^ (~0UL >> 1))
#define PFN_END (~0UL)

/*
 * kernel/power/power.h. On x86 the architecture's restore header
 * (arch/x86/power/hibernate.c) is written over the start of uts.
 */
#define X86_64_RESTORE_MAGIC 0x23456789ABCDEF02UL

struct x86_restore_data_record {
	unsigned long jump_address;
	unsigned long jump_address_phys;
	unsigned long cr3;
	unsigned long magic;
	unsigned long e820_checksum;
};

struct swsusp_info {
	char uts[6][65];
	uint32_t version_code;
	unsigned long num_physpages;
	int cpus;
	unsigned long image_pages;
	unsigned long pages;
	unsigned long size;
};

/* A page to look for in the stream, with what it must hold. */
struct target {
	unsigned long pfn;
	unsigned char expect[PAGE];
	int seen;	/* as a data page */
	int matched;	/* ... with the expected contents */
	int zero;	/* as an all-zero PFN */
	uint64_t word;	/* the first word of its data page */
};

struct stream {
	struct swsusp_info hdr;
	unsigned long *pfns;
	unsigned long nr_pfns, nr_zero;
	unsigned long bytes, calls, data_pages;
	struct target *t;
	int nr_t;
};

/* The PFN behind @addr in this process, or 0. */
static inline unsigned long pfn_of(const void *addr)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (pread(fd, &e, sizeof(e), (uintptr_t)addr / PAGE * sizeof(e)) != sizeof(e))
		e = 0;
	close(fd);
	return (e & (1ULL << 63)) ? e & ((1ULL << 55) - 1) : 0;
}

/*
 * A read buffer of CHUNK bytes, mapped and unmapped each time: malloc()
 * would keep it in the heap after free() and blur the memory checks.
 */
static inline void *chunk_alloc(void)
{
	void *p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static inline void chunk_free(void *p)
{
	munmap(p, CHUNK);
}

/* The flags of @pfn in /proc/kpageflags, or 0. */
static inline uint64_t page_flags(unsigned long pfn)
{
	uint64_t f = 0;
	int fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (pread(fd, &f, sizeof(f), pfn * sizeof(f)) != sizeof(f))
		f = 0;
	close(fd);
	return f;
}

/* A target: @pfn must hold the pattern @seed at offset @off. */
static inline void want(struct target *t, unsigned long pfn, unsigned int seed, off_t off)
{
	t->pfn = pfn;
	pattern(t->expect, PAGE, seed, off);
}

static inline int is_pattern(const unsigned char *p, size_t len, unsigned int seed, off_t off)
{
	unsigned char want[PAGE];

	for (size_t i = 0; i < len; i += PAGE) {
		pattern(want, PAGE, seed, off + i);
		if (memcmp(p + i, want, PAGE))
			return 0;
	}
	return 1;
}

/*
 * A child that sets up memory, reports up to eight PFNs, then on "go" writes
 * after the atomic point and reports whether it sees its own writes.
 */
struct kid {
	pid_t pid;
	int go[2];	/* test -> child */
	int rep[2];	/* child -> test */
	unsigned long pfn[8];
};

struct kid_ops {
	/* In the child: set up, fill @pfn; 0 or an exit code. */
	int (*setup)(void *mem, unsigned long *pfn);
	/* In the child, after the atomic point: write; 1 if it reads back its writes. */
	int (*write)(void *mem);
};

static inline int kid_start(struct kid *k, const struct kid_ops *ops, void *mem)
{
	if (pipe(k->go) || pipe(k->rep))
		return -1;
	k->pid = fork();
	if (k->pid < 0)
		return -1;
	if (k->pid == 0) {
		unsigned long pfn[8] = { 0 };
		char c;
		int ok;

		if (ops->setup(mem, pfn))
			_exit(1);
		if (write(k->rep[1], pfn, sizeof(pfn)) != sizeof(pfn))
			_exit(1);
		/* The freeze stops the child here. */
		if (read(k->go[0], &c, 1) != 1)
			_exit(1);
		ok = ops->write ? ops->write(mem) : 1;
		if (write(k->rep[1], &ok, sizeof(ok)) != sizeof(ok))
			_exit(1);
		for (;;)
			pause();
	}
	return read(k->rep[0], k->pfn, sizeof(k->pfn)) == sizeof(k->pfn) ? 0 : -1;
}

/* Continues a stopped child, as a helper would, and has it write; its answer. */
static inline int kid_write(struct kid *k)
{
	int ok = 0;

	kill(k->pid, SIGCONT);
	if (write(k->go[1], "g", 1) != 1 || read(k->rep[0], &ok, sizeof(ok)) != sizeof(ok))
		return -1;
	return ok;
}

static inline void kid_end(struct kid *k)
{
	if (k->pid > 0) {
		kill(k->pid, SIGKILL);
		waitpid(k->pid, NULL, 0);
	}
	close(k->go[0]);
	close(k->go[1]);
	close(k->rep[0]);
	close(k->rep[1]);
}

/*
 * The targets that are not in the stream with what they must hold, each
 * printed with @name and why; how many.
 */
static inline int targets_missed(const struct target *t, int nr, const char *const *name)
{
	int i, missed = 0;

	for (i = 0; i < nr; i++) {
		const char *why = !t[i].seen ? (t[i].zero ? "listed as zero" : "not in the image")
					     : "contents changed after the atomic point";

		if (t[i].seen && t[i].matched)
			continue;
		ksft_print_msg("%s (pfn %lu): %s\n", name[i], t[i].pfn, why);
		missed++;
	}
	return missed;
}

/* The byte that fills page @i of a region filled with @seed: never 0. */
static inline unsigned char fill_byte(unsigned int seed, size_t i)
{
	return 1 + (seed * 37 + i) % 251;
}

static inline void fill(unsigned char *m, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len / PAGE; i++)
		memset(m + i * PAGE, fill_byte(seed, i), PAGE);
}

static inline int filled(const unsigned char *m, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len / PAGE; i++)
		if (m[i * PAGE] != fill_byte(seed, i) ||
		    m[i * PAGE + PAGE - 1] != fill_byte(seed, i))
			return 0;
	return 1;
}

/* A target's PFN and index, sorted by PFN to look the targets up. */
struct target_at {
	unsigned long pfn;
	int i;
};

static inline int target_at_cmp(const void *a, const void *b)
{
	const struct target_at *x = a, *y = b;

	return x->pfn < y->pfn ? -1 : x->pfn > y->pfn;
}

/* Checks data page @p, at @pfn, against the targets (@at, sorted by PFN). */
static inline void see_page(struct stream *s, const struct target_at *at, unsigned long pfn,
			    const unsigned char *p)
{
	int lo = 0, hi = s->nr_t;

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;

		if (at[mid].pfn < pfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < s->nr_t && at[lo].pfn == pfn; lo++) {
		struct target *t = &s->t[at[lo].i];

		t->seen = 1;
		t->matched = !memcmp(p, t->expect, PAGE);
		memcpy(&t->word, p, sizeof(t->word));
	}
}

/* read_stream() with the targets sorted by PFN in @at. */
static inline int read_stream_at(int fd, struct stream *s, const struct target_at *at)
{
	unsigned char *buf = chunk_alloc();
	unsigned long page = 0, meta = 0, next = 0, max = 0;
	ssize_t n;
	int i;

	if (!buf)
		return -ENOMEM;
	while ((n = read(fd, buf, CHUNK)) > 0) {
		s->calls++;
		if (n % PAGE) {
			chunk_free(buf);
			return -EPROTO;
		}
		for (unsigned char *p = buf; p < buf + n; p += PAGE, page++) {
			if (page == 0) {
				memcpy(&s->hdr, p, sizeof(s->hdr));
				meta = s->hdr.pages - s->hdr.image_pages - 1;
				max = meta * (PAGE / sizeof(long));
				s->pfns = calloc(max + 1, sizeof(long));
				if (!s->pfns)
					return -ENOMEM;
			} else if (page <= meta) {
				const unsigned long *l = (const unsigned long *)p;

				for (i = 0; i < (int)(PAGE / sizeof(long)); i++) {
					if (l[i] == PFN_END)
						break;
					s->pfns[s->nr_pfns++] = l[i];
					s->nr_zero += !!(l[i] & PFN_ZERO);
				}
			} else {
				unsigned long pfn;

				while (next < s->nr_pfns && (s->pfns[next] & PFN_ZERO))
					next++;
				if (next >= s->nr_pfns) {
					chunk_free(buf);
					return -E2BIG;
				}
				pfn = s->pfns[next++];
				s->data_pages++;
				see_page(s, at, pfn, p);
			}
		}
	}
	chunk_free(buf);
	if (n < 0)
		return -errno;
	s->bytes = page * PAGE;
	for (i = 0; i < s->nr_t; i++)
		for (unsigned long j = 0; j < s->nr_pfns; j++)
			if (s->pfns[j] == (s->t[i].pfn | PFN_ZERO))
				s->t[i].zero = 1;
	return 0;
}

/* Reads the whole stream from @fd, CHUNK bytes per read(), checking the targets. */
static inline int read_stream(int fd, struct stream *s)
{
	struct target_at *at = calloc(s->nr_t + 1, sizeof(*at));
	int i, ret;

	if (!at)
		return -ENOMEM;
	for (i = 0; i < s->nr_t; i++)
		at[i] = (struct target_at){ s->t[i].pfn, i };
	qsort(at, s->nr_t, sizeof(*at), target_at_cmp);
	ret = read_stream_at(fd, s, at);
	free(at);
	return ret;
}

/* Reads and discards the stream; returns the bytes read or -errno. */
static inline long drain(int fd, unsigned long *calls)
{
	char *buf = chunk_alloc();
	long total = 0;
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	while ((n = read(fd, buf, CHUNK)) > 0) {
		total += n;
		if (calls)
			(*calls)++;
	}
	chunk_free(buf);
	return n < 0 ? -errno : total;
}

static inline int geometry(int fd, struct hibsnap_geometry *g)
{
	memset(g, 0xff, sizeof(*g));
	return ioctl(fd, HIBSNAP_IOC_GEOMETRY, g);
}

/* Whether the kernel log has a line containing @needle. */
static inline int kmsg_has(const char *needle)
{
	char line[1024];
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC), found = 0;
	ssize_t n;

	if (fd < 0)
		return 0;
	while ((n = read(fd, line, sizeof(line) - 1)) > 0 || (n < 0 && errno == EPIPE)) {
		if (n <= 0)
			continue;
		line[n] = 0;
		if (strstr(line, needle))
			found = 1;
	}
	close(fd);
	return found;
}

#endif /* __HIBSNAP_IMAGE_H */
