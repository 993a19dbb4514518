/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * hibsnap: hibernation by a kernel-only snapshot.
 *
 * See Documentation/power/hibsnap.rst for the full description.
 *
 * freeze_processes(2)
 *
 *	int freeze_processes(unsigned int flags);
 *
 * Stops every userspace thread group with a private SIGSTOP, except the
 * caller's, the caller's tracer's (if it is being ptraced) and the global
 * init's (which the kernel never lets SIGSTOP reach). Kernel threads are not
 * touched. Returns when every thread of those groups is quiet: in a
 * job-control stop (state T) or a ptrace stop (state t), exiting, or asleep
 * in the kernel (S or D) with its stop pending, in which case it stops on
 * its way back to user space whenever its sleep ends. It returns a new file
 * descriptor (O_CLOEXEC) that owns the freeze;
 * ioctl(fd, HIBSNAP_IOC_FREEZE_STATUS) counts the threads by state. Closing
 * the last reference to it (or the caller exiting) sends SIGCONT to exactly
 * the thread groups the freeze stopped: groups that were already stopped
 * stay stopped.
 *
 * Errors:
 *	EINVAL		flags has a bit not in HIBSNAP_FREEZE_FLAGS_ALL
 *	EPERM		the caller lacks CAP_SYS_ADMIN
 *	EBUSY		a freeze is already held
 *	ETIMEDOUT	some thread was not quiet within the timeout (the
 *			hibsnap.freeze_timeout_ms parameter, 20 s by default):
 *			it kept running in the kernel without sleeping or
 *			returning to user space, or an exempt task kept
 *			continuing it; the threads are named in the kernel log
 *	EINTR		the caller got a fatal signal while waiting
 *	ENOMEM, EMFILE, ENFILE
 * On any error no task is left stopped by the call.
 *
 * snapshot_kernel(2)
 *
 *	int snapshot_kernel(unsigned long overhead_pages, unsigned int flags);
 *
 * Takes a hibernation image of the whole system in which only kernel memory
 * is copied: the caller must hold the freeze (freeze_processes(2)). The call
 * makes the private anonymous memory of every process copy-on-write (as
 * fork() does), reserves memory for the copy and overhead_pages more (kept
 * while the image is open, for copy-on-write faults), syncs the filesystems,
 * suspends the devices, takes the secondary CPUs offline and, with
 * interrupts off, copies kernel memory, keeps in place the user pages that
 * nothing can write any more (copy-on-write anonymous pages; page-cache
 * pages whose files then cannot be opened for writing, ETXTBSY, until the
 * image ends), copies the other user pages, starts the snapshot of every
 * dm-hibsnap device (writes from then on are kept apart) and stops swap
 * writes (what swap holds stays valid; swap-in works). Shared memory (tmpfs,
 * shmem, SysV shm, memfd) is kept in place and copied before its first
 * write after the atomic point. Devices and CPUs are
 * then resumed and a new file descriptor (O_CLOEXEC, read-only, not
 * seekable) to the image is returned. The image is the system at the atomic
 * point whatever runs or writes afterwards: the freeze may be released at
 * once, and the image still read to the end (a live checkpoint), the disks'
 * writes kept apart until it is closed:
 *
 *	read()	 streams the image: byte for byte what /dev/snapshot's read()
 *		 returns after SNAPSHOT_CREATE_IMAGE (struct swsusp_info with
 *		 the architecture's header in a page, then the PFN list, one
 *		 unsigned long per page, bit 63 set for an all-zero page that
 *		 has no data, then one page of data per other PFN, in order),
 *		 so the kernel's own loader (/dev/snapshot write() and
 *		 SNAPSHOT_ATOMIC_RESTORE) restores it. Reads of any size are
 *		 served, many pages per call. Returns 0 at the end. Fails
 *		 with ENOMEM once the image has been dropped: when the system
 *		 runs out of memory with the image open, the overhead pages
 *		 are given back first, then the image drops the pages it
 *		 kept (geometry flag HIBSNAP_GEOMETRY_DROPPED); no task is
 *		 killed for it. Likewise when no memory is left for a copy of
 *		 shared memory before a write: the write goes ahead, the
 *		 image is dropped.
 *	ioctl(HIBSNAP_IOC_GEOMETRY) fills struct hibsnap_geometry.
 *	poll()	 always readable.
 *	lseek(), pread()  fail with ESPIPE.
 *	close()	 (of the last reference) ends the image: the writes kept
 *		 apart by dm-hibsnap are merged back, so nothing written
 *		 meanwhile is lost, swap takes writes again, and the pages
 *		 kept in place are let go.
 *
 * When the image is restored later, control comes back from the same call
 * in the restored system: it returns a file descriptor again, whose geometry
 * has HIBSNAP_GEOMETRY_RESUMED set and whose read() returns 0 at once.
 *
 * Errors:
 *	EINVAL		flags has a bit not in HIBSNAP_SNAPSHOT_FLAGS_ALL
 *	EPERM		the caller lacks CAP_SYS_ADMIN, or hibernation is not
 *			available (kernel lockdown, "nohibernate")
 *	ENOLCK		the caller does not hold the freeze
 *	EBUSY		an image is open, /dev/snapshot is in use, a
 *			dm-hibsnap device is suspended by userspace, or a
 *			filesystem is mounted writable with a block device
 *			that is not a dm-hibsnap device (its own, an external
 *			journal or log, any of a btrfs's; the kernel log names
 *			the filesystem and the mount point) and
 *			HIBSNAP_SNAPSHOT_FREEZE_OTHERS is not given
 *	ENOMEM		the memory for the copy of kernel memory and the
 *			overhead pages cannot be reserved; the kernel log
 *			gives the numbers
 *	EINTR		a fatal signal came while waiting for a process's mmap
 *			lock
 *	any error of a device's suspend callbacks, EMFILE, ENFILE
 * On any error everything is undone: devices resumed, pages let go, memory
 * freed, dm-hibsnap snapshots merged back. (Pages made copy-on-write stay
 * write-protected until their next write, which reuses them.)
 */

#ifndef _UAPI_LINUX_HIBSNAP_H
#define _UAPI_LINUX_HIBSNAP_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* freeze_processes(2) flags: none are defined yet. */
#define HIBSNAP_FREEZE_FLAGS_ALL	0U

/*
 * snapshot_kernel(2) flags.
 * HIBSNAP_SNAPSHOT_FREEZE_OTHERS: a filesystem mounted writable with a block
 * device that is not a dm-hibsnap device is frozen until the image is
 * closed, instead of failing the call with EBUSY.
 */
#define HIBSNAP_SNAPSHOT_FREEZE_OTHERS	(1U << 0)
#define HIBSNAP_SNAPSHOT_FLAGS_ALL	HIBSNAP_SNAPSHOT_FREEZE_OTHERS

/*
 * The geometry of an image, from ioctl(fd, HIBSNAP_IOC_GEOMETRY, &geo).
 * Every saveable page at the atomic point is in exactly one class; the
 * *_pages counts by class include all-zero pages.
 */
struct hibsnap_geometry {
	__u64 copied_pages;	/* pages copied at the atomic point, with data */
	__u64 streamed_pages;	/* user pages read in place, with data */
	__u64 zero_pages;	/* all-zero pages: in the PFN list, no data */
	__u64 meta_pages;	/* pages of the PFN list */
	/* What read() returns in all: page_size * (1 + meta + copied + streamed) */
	__u64 image_bytes;
	__u32 page_size;
	__u32 flags;		/* HIBSNAP_GEOMETRY_* */
	/*
	 * How long interrupts were off at the atomic point, in nanoseconds of
	 * local_clock() (sched_clock), which runs on while timekeeping is
	 * suspended there; CLOCK_MONOTONIC does not.
	 */
	__u64 atomic_ns;
	/* In place: private anonymous pages, copy-on-write from the atomic point */
	__u64 cow_pages;
	/* In place: page-cache pages; their files cannot be opened for writing */
	__u64 denied_pages;
	/* Copied: user pages that may be DMA-pinned (O_DIRECT, io_uring, RDMA) */
	__u64 pinned_pages;
	/* Copied: anonymous pages in the swap cache */
	__u64 swapcache_pages;
	/* Copied: anonymous pages mapped writable (written since protected) */
	__u64 exclusive_pages;
	/*
	 * In place: shared memory (tmpfs and shmem files, MAP_SHARED anonymous
	 * memory, SysV shm, memfd), copied before its first write
	 */
	__u64 shared_pages;
	/* Copied: shared memory mapped writable (write-faulted since protected) */
	__u64 written_pages;
	/*
	 * Pages of shared memory copied before a write since the atomic point,
	 * so far: memory the image uses beyond the copy of kernel memory
	 */
	__u64 cbw_pages;
};

/* Control came back in a system restored from the image. */
#define HIBSNAP_GEOMETRY_RESUMED	(1U << 0)
/*
 * The system ran out of memory with the image open and the image was dropped
 * to give memory back: read() fails with ENOMEM.
 */
#define HIBSNAP_GEOMETRY_DROPPED	(1U << 1)

/*
 * The threads of the thread groups a freeze holds, by state, now, from
 * ioctl(freeze_fd, HIBSNAP_IOC_FREEZE_STATUS, &st). A thread asleep when the
 * freeze returned counts as stopped once it has stopped.
 */
struct hibsnap_freeze_status {
	__u32 groups;	/* thread groups held: stopped by the freeze or before it */
	__u32 stopped;	/* threads in a stop (T, t), or exiting */
	__u32 asleep;	/* threads asleep in the kernel with their stop pending */
	__u32 running;	/* threads woken and not stopped yet, or continued */
};

#define HIBSNAP_IOC_MAGIC		0xB9
#define HIBSNAP_IOC_GEOMETRY		_IOR(HIBSNAP_IOC_MAGIC, 0x01, \
					     struct hibsnap_geometry)
#define HIBSNAP_IOC_FREEZE_STATUS	_IOR(HIBSNAP_IOC_MAGIC, 0x02, \
					     struct hibsnap_freeze_status)

#endif /* _UAPI_LINUX_HIBSNAP_H */
