// SPDX-License-Identifier: GPL-2.0
/*
 * hibsnap system calls: thin shims into the Rust implementation in
 * kernel/power/snapshot_rs/.
 */

#include <linux/hibsnap.h>
#include <linux/syscalls.h>

SYSCALL_DEFINE1(freeze_processes, unsigned int, flags)
{
	return hibsnap_freeze_processes(flags);
}

SYSCALL_DEFINE2(snapshot_kernel, unsigned long, overhead_pages,
		unsigned int, flags)
{
	return hibsnap_snapshot_kernel(overhead_pages, flags);
}
