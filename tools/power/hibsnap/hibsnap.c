// SPDX-License-Identifier: GPL-2.0
/*
 * hibsnap - userspace side of hibernation by a kernel-only snapshot.
 *
 * Usage:
 *   hibsnap freeze [--hold SECONDS] [--show] [--watch FILE]...
 *
 * freeze: stop every other userspace process with freeze_processes(2),
 * hold the freeze for SECONDS (default 1), then release it. --show lists
 * every process and its state while frozen; --watch prints FILE's first
 * line at the start and the end of the hold (a counter written by a
 * process that should be stopped must not change).
 *
 * See Documentation/power/hibsnap.rst.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/hibsnap.h>

#ifndef __NR_freeze_processes
#define __NR_freeze_processes 473
#endif

#define MAX_WATCH 8

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void first_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");

	buf[0] = 0;
	if (f) {
		if (!fgets(buf, len, f))
			buf[0] = 0;
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = 0;
}

/* Print PID, state and command of every userspace process; count stopped ones. */
static int show_processes(int *stopped)
{
	struct dirent *de;
	int total = 0;
	DIR *d = opendir("/proc");

	if (!d)
		return -1;
	*stopped = 0;
	printf("%7s %5s  %s\n", "PID", "STATE", "COMMAND");
	while ((de = readdir(d))) {
		char path[300], buf[512], comm[64] = "", *p;
		int pid = atoi(de->d_name);
		char state;

		if (pid <= 0)
			continue;
		/* Kernel threads have an empty cmdline; skip them. */
		snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
		first_line(path, buf, sizeof(buf));
		if (!buf[0])
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		first_line(path, buf, sizeof(buf));
		p = strrchr(buf, ')');
		if (!p || !strchr(buf, '('))
			continue;
		state = p[2];
		*p = 0;
		snprintf(comm, sizeof(comm), "%s", strchr(buf, '(') + 1);
		printf("%7d %5c  %s%s\n", pid, state, comm,
		       pid == getpid() ? "   (the caller: runs on)" : "");
		total++;
		if (state == 'T' || state == 't')
			(*stopped)++;
	}
	closedir(d);
	return total;
}

static int cmd_freeze(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "hold", required_argument, NULL, 'h' },
		{ "show", no_argument, NULL, 's' },
		{ "watch", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	const char *watch[MAX_WATCH];
	char before[MAX_WATCH][64], after[64];
	int nwatch = 0, show = 0, fd, c, i, total = 0, stopped = 0, changed = 0;
	double hold = 1, t0, t1;

	while ((c = getopt_long(argc, argv, "h:sw:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			hold = atof(optarg);
			break;
		case 's':
			show = 1;
			break;
		case 'w':
			if (nwatch == MAX_WATCH) {
				fprintf(stderr, "hibsnap: at most %d --watch\n", MAX_WATCH);
				return 2;
			}
			watch[nwatch++] = optarg;
			break;
		default:
			return 2;
		}
	}

	t0 = now_ms();
	fd = syscall(__NR_freeze_processes, 0);
	t1 = now_ms();
	if (fd < 0) {
		fprintf(stderr, "hibsnap: freeze_processes: %s\n", strerror(errno));
		return 1;
	}
	printf("froze userspace in %.1f ms (freeze fd %d)\n", t1 - t0, fd);
	for (i = 0; i < nwatch; i++)
		first_line(watch[i], before[i], sizeof(before[i]));
	if (show) {
		total = show_processes(&stopped);
		printf("%d of %d userspace processes stopped (all but this one, init included)\n",
		       stopped, total);
	}
	usleep(hold * 1e6);
	for (i = 0; i < nwatch; i++) {
		first_line(watch[i], after, sizeof(after));
		printf("%s: %s at the start of the hold, %s at its end%s\n", watch[i],
		       before[i], after, strcmp(before[i], after) ? "  CHANGED" : "");
		changed |= !!strcmp(before[i], after);
	}
	close(fd);
	printf("released: every process the freeze stopped runs again\n");
	/* All but the caller. */
	if (show && stopped != total - 1) {
		printf("DEMO: FAIL %d processes were not stopped\n", total - 1 - stopped);
		return 1;
	}
	if (changed) {
		printf("DEMO: FAIL a watched file changed while frozen\n");
		return 1;
	}
	printf("DEMO: PASS every other process was stopped, the caller ran on\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "freeze"))
		return cmd_freeze(argc - 1, argv + 1);
	fprintf(stderr,
		"usage: hibsnap freeze [--hold SECONDS] [--show] [--watch FILE]...\n");
	return 2;
}
