// SPDX-License-Identifier: GPL-2.0

#include <linux/fault-inject.h>

/* FAULT_ATTR_INITIALIZER, for a struct fault_attr that is not a static. */
__rust_helper void rust_helper_fault_attr_init(struct fault_attr *attr)
{
#ifdef CONFIG_FAULT_INJECTION
	*attr = (struct fault_attr)FAULT_ATTR_INITIALIZER;
	ratelimit_state_init(&attr->ratelimit_state, 0, DEFAULT_RATELIMIT_BURST);
#endif
}
