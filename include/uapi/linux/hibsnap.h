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
 * touched. Returns only when every stopped thread is in a job-control
 * stop (state T) or a ptrace stop (state t), with a new file descriptor
 * (O_CLOEXEC) that owns the freeze. Closing the last reference to it (or the
 * caller exiting) sends SIGCONT to exactly the thread groups the freeze
 * stopped: groups that were already stopped stay stopped.
 *
 * Errors:
 *	EINVAL		flags has a bit not in HIBSNAP_FREEZE_FLAGS_ALL
 *	EPERM		the caller lacks CAP_SYS_ADMIN
 *	EBUSY		a freeze is already held
 *	ETIMEDOUT	some task did not stop within the timeout (the
 *			hibsnap.freeze_timeout_ms parameter, 20 s by default);
 *			the tasks are named in the kernel log
 *	EINTR		the caller got a fatal signal while waiting
 *	ENOMEM, EMFILE, ENFILE
 * On any error no task is left stopped by the call.
 */

#ifndef _UAPI_LINUX_HIBSNAP_H
#define _UAPI_LINUX_HIBSNAP_H

/* freeze_processes(2) flags: none are defined yet. */
#define HIBSNAP_FREEZE_FLAGS_ALL	0U

#endif /* _UAPI_LINUX_HIBSNAP_H */
