// SPDX-License-Identifier: GPL-2.0

#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/string.h>

__rust_helper struct task_struct *rust_helper_next_task(struct task_struct *p)
{
	return next_task(p);
}

__rust_helper struct task_struct *rust_helper_task_first_thread(struct task_struct *p)
{
	return list_first_or_null_rcu(&p->signal->thread_head, struct task_struct,
				      thread_node);
}

__rust_helper struct task_struct *rust_helper___next_thread(struct task_struct *p)
{
	return __next_thread(p);
}

__rust_helper bool rust_helper_task_is_stopped_or_traced(struct task_struct *p)
{
	return task_is_stopped_or_traced(p);
}

__rust_helper bool rust_helper_task_group_stopped(struct task_struct *p)
{
	return READ_ONCE(p->signal->flags) & SIGNAL_STOP_STOPPED;
}

__rust_helper struct task_struct *rust_helper_ptrace_parent(struct task_struct *p)
{
	return ptrace_parent(p);
}

__rust_helper void rust_helper_task_copy_comm(char *buf, struct task_struct *p)
{
	strscpy_pad(buf, p->comm, TASK_COMM_LEN);
}

__rust_helper bool rust_helper_task_is_asleep(struct task_struct *p)
{
	return READ_ONCE(p->__state) & (TASK_INTERRUPTIBLE | TASK_UNINTERRUPTIBLE);
}

__rust_helper bool rust_helper_task_stop_pending(struct task_struct *p)
{
	return (READ_ONCE(p->jobctl) & JOBCTL_STOP_PENDING) ||
	       sigismember(&p->pending.signal, SIGSTOP) ||
	       sigismember(&p->signal->shared_pending.signal, SIGSTOP);
}

__rust_helper void rust_helper_tasklist_read_lock(void)
{
	read_lock(&tasklist_lock);
}

__rust_helper void rust_helper_tasklist_read_unlock(void)
{
	read_unlock(&tasklist_lock);
}
