/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the hibsnap kselftests.
 */

#ifndef __HIBSNAP_UTIL_H
#define __HIBSNAP_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/suspend_ioctls.h>

/* The dm-hibsnap device the kernel command line creates, over /dev/ram1. */
#define BOOT_DM "/dev/mapper/hsboot"
#define BOOT_ORIGIN "/dev/ram1"

#ifndef __NR_freeze_processes
#define __NR_freeze_processes 473
#endif
#ifndef __NR_snapshot_kernel
#define __NR_snapshot_kernel 474
#endif

static inline int sys_freeze_processes(unsigned int flags)
{
	return syscall(__NR_freeze_processes, flags);
}

static inline int sys_snapshot_kernel(unsigned long overhead_pages, unsigned int flags)
{
	return syscall(__NR_snapshot_kernel, overhead_pages, flags);
}

/*
 * The number after "@key@sep" on a line of the file @path (/proc/meminfo
 * has "MemFree:", /proc/vmstat "oom_kill "), or -1.
 */
static inline long proc_number(const char *path, const char *key, char sep)
{
	char line[256];
	long val = -1;
	size_t len = strlen(key);
	FILE *f = fopen(path, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, len) && line[len] == sep)
			val = strtol(line + len + 1, NULL, 10);
	fclose(f);
	return val;
}

/* A field of /proc/meminfo, in kB, or -1. */
static inline long meminfo_kb(const char *key)
{
	return proc_number("/proc/meminfo", key, ':');
}

/* Writes @s to the file @path (a sysfs or debugfs knob); 0 or -1. */
static inline int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ok;

	if (fd < 0)
		return -1;
	ok = write(fd, s, strlen(s)) == (ssize_t)strlen(s);
	close(fd);
	return ok ? 0 : -1;
}

/* CLOCK_MONOTONIC in seconds. */
static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The state letter of /proc/PID/stat ('R', 'S', 'D', 'T', 't', 'Z'), or 0. */
static inline char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/* Run a shell command; its output (stdout and stderr) goes to @out. */
static inline int run(char *out, size_t len, const char *fmt, ...)
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

/* Fill @buf with a pattern that depends on @seed and the byte's offset. */
static inline void pattern(unsigned char *buf, size_t len, unsigned int seed, off_t off)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (unsigned char)((off + i) * 131 + seed * 7 + ((off + i) >> 9));
}

static inline int pio(const char *path, int write, void *buf, size_t len, off_t off)
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

/*
 * The rest of the line of /proc/@pid/status that starts with @key ("VmSwap:",
 * "NSpid:"), in @buf; 0, or -1 if there is none.
 */
static inline int proc_status(pid_t pid, const char *key, char *buf, size_t len)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	int found = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (found && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen)) {
			size_t n = strnlen(line + klen, len - 1);

			memcpy(buf, line + klen, n);
			buf[n] = 0;
			found = 0;
		}
	fclose(f);
	return found;
}

/* VmSwap of @pid in kB, or -1. */
static inline long vm_swap_kb(pid_t pid)
{
	char value[64];

	return proc_status(pid, "VmSwap:", value, sizeof(value)) ? -1 : strtol(value, NULL, 10);
}

/* Makes a new ext4 on the boot dm-hibsnap device and mounts it on /mnt. */
static inline int mount_fresh_ext4(void)
{
	if (run(NULL, 0, "dmsetup mknodes hsboot") ||
	    run(NULL, 0, "/usr/sbin/mke2fs -q -F -t ext4 -b 4096 " BOOT_DM))
		return -1;
	mkdir("/mnt", 0755);
	return mount(BOOT_DM, "/mnt", "ext4", 0, NULL);
}

/*
 * Whether /mnt/@name on the boot dm-hibsnap device, mounted on /mnt, holds
 * @want: unmounts it, checks the filesystem, mounts it read-only, reads
 * the file back and unmounts it again. 0, or -1 with the reason printed.
 */
static inline int boot_dm_file_is(const char *name, const void *want, size_t len)
{
	char path[256];
	void *got = malloc(len);
	int fd, ret = -1;

	snprintf(path, sizeof(path), "/mnt/%s", name);
	if (!got || umount("/mnt")) {
		printf("# umount /mnt: %m\n");
	} else if (run(NULL, 0, "/usr/sbin/e2fsck -fn " BOOT_DM)) {
		printf("# e2fsck " BOOT_DM " found errors\n");
	} else if (mount(BOOT_DM, "/mnt", "ext4", MS_RDONLY, NULL)) {
		printf("# mount " BOOT_DM ": %m\n");
	} else {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && read(fd, got, len) == (ssize_t)len && !memcmp(got, want, len))
			ret = 0;
		else
			printf("# %s does not hold what was written\n", path);
		if (fd >= 0)
			close(fd);
		umount("/mnt");
	}
	free(got);
	return ret;
}

/*
 * Mainline hibernation's image: /dev/snapshot's SNAPSHOT_CREATE_IMAGE, the
 * freezer and all, the image freed at once; 0 or -errno.
 */
static inline int devsnapshot_create(void)
{
	int fd = open("/dev/snapshot", O_RDONLY | O_CLOEXEC), in_suspend = 0, err = 0;

	if (fd < 0)
		return -errno;
	if (ioctl(fd, SNAPSHOT_FREEZE)) {
		err = -errno;
	} else {
		if (ioctl(fd, SNAPSHOT_CREATE_IMAGE, &in_suspend))
			err = -errno;
		else
			ioctl(fd, SNAPSHOT_FREE);
		ioctl(fd, SNAPSHOT_UNFREEZE);
	}
	close(fd);
	return err;
}

#endif /* __HIBSNAP_UTIL_H */
