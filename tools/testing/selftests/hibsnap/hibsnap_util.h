/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the hibsnap kselftests.
 */

#ifndef __HIBSNAP_UTIL_H
#define __HIBSNAP_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A field of /proc/meminfo, in kB, or -1. */
static inline long meminfo_kb(const char *key)
{
	char line[256];
	long val = -1;
	size_t len = strlen(key);
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, len) && line[len] == ':')
			val = strtol(line + len + 1, NULL, 10);
	fclose(f);
	return val;
}

/* CLOCK_MONOTONIC in seconds. */
static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif /* __HIBSNAP_UTIL_H */
