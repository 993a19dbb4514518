/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hibsnap: hibernation by a kernel-only snapshot. Entry points implemented
 * in Rust (kernel/power/snapshot_rs/) and called by the syscall shims.
 */

#ifndef _LINUX_HIBSNAP_H
#define _LINUX_HIBSNAP_H

#include <linux/types.h>
#include <uapi/linux/hibsnap.h>

long hibsnap_freeze_processes(unsigned int flags);
long hibsnap_snapshot_kernel(unsigned long overhead_pages, unsigned int flags);

/*
 * dm-hibsnap (drivers/md/dm-hibsnap/): suspend every device with a hibsnap
 * target, its filesystem frozen, before the atomic point, and resume them
 * after it; snapshot every hibsnap device at the atomic point (no sleeping
 * lock, no allocation: safe with interrupts off, with the devices
 * quiesced), and end the snapshots afterwards, merging (an aborted
 * hibernation) or dropping (a resumed system) their stores. Each returns
 * the number of devices, or a negative errno. dm_hibsnap_has_device():
 * whether @devt is a device-mapper device with a hibsnap target.
 */
#ifdef CONFIG_DM_HIBSNAP
int dm_hibsnap_suspend_all(void);
int dm_hibsnap_resume_all(void);
int dm_hibsnap_snapshot_all(void);
int dm_hibsnap_end_all(bool merge);
bool dm_hibsnap_has_device(dev_t devt);
#else
static inline int dm_hibsnap_suspend_all(void)
{
	return 0;
}

static inline int dm_hibsnap_resume_all(void)
{
	return 0;
}

static inline int dm_hibsnap_snapshot_all(void)
{
	return 0;
}

static inline int dm_hibsnap_end_all(bool merge)
{
	return 0;
}

static inline bool dm_hibsnap_has_device(dev_t devt)
{
	return false;
}
#endif

#endif /* _LINUX_HIBSNAP_H */
