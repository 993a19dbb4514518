// SPDX-License-Identifier: GPL-2.0

#include <linux/cpu.h>
#include <linux/cpuidle.h>
#include <linux/fs.h>
#include <linux/irqflags.h>
#include <linux/sched/clock.h>

/* As kernel/power/power.h has them, for hibernation from Rust. */
__rust_helper int rust_helper_pm_sleep_disable_secondary_cpus(void)
{
	cpuidle_pause();
	return suspend_disable_secondary_cpus();
}

__rust_helper void rust_helper_pm_sleep_enable_secondary_cpus(void)
{
	suspend_enable_secondary_cpus();
	cpuidle_resume();
}

__rust_helper void rust_helper_local_irq_disable(void)
{
	local_irq_disable();
}

__rust_helper void rust_helper_local_irq_enable(void)
{
	local_irq_enable();
}

__rust_helper u64 rust_helper_local_clock(void)
{
	return local_clock();
}

__rust_helper bool rust_helper_sb_rdonly(const struct super_block *sb)
{
	return sb_rdonly(sb);
}
