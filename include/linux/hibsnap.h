/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hibsnap: hibernation by a kernel-only snapshot. Entry points implemented
 * in Rust (kernel/power/snapshot_rs/) and called by the syscall shims.
 */

#ifndef _LINUX_HIBSNAP_H
#define _LINUX_HIBSNAP_H

#include <uapi/linux/hibsnap.h>

long hibsnap_freeze_processes(unsigned int flags);

#endif /* _LINUX_HIBSNAP_H */
