// SPDX-License-Identifier: GPL-2.0
/* Kernel stacks: the unused part of each thread's stack, below its saved stack pointer. */
#include "sparc_helper.h"

void collect_stacks(struct collector *c, struct task_struct *task)
{
	struct task_struct *t;

	rcu_read_lock();
	for_each_thread(task, t) {
		unsigned long base = (unsigned long)task_stack_page(t);
		unsigned long sp = t->thread.sp;

		/* A thread's page-frag cache holds what it last sent over TCP, long after the
		 * skbs are gone (frozen, the thread does not touch it). */
		if (t->task_frag.page)
			emit_phys(c, "socket", page_to_phys(t->task_frag.page), t->task_frag.size);
		/* Only a thread that is switched out has a saved stack pointer to trust. */
		if (!base || t == current || READ_ONCE(t->on_cpu) || READ_ONCE(t->__state) == TASK_RUNNING)
			continue;
		/* Keep the end-of-stack canary and a margin below the live frames. */
		if (sp > base + 256 && sp <= base + THREAD_SIZE)
			emit_virt(c, "kstack", (void *)(base + 64), sp - 128 - (base + 64));
	}
	rcu_read_unlock();
}

