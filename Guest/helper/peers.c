// SPDX-License-Identifier: GPL-2.0
/*
 * sparc_helper: the system scan — every process's pipes and sockets, for data the excluded
 * processes wrote into a queue someone else holds (a FIFO whose writer closed it, a unix
 * stream whose sender exited, a datagram nobody has read, TCP data acknowledged on loopback).
 * Attribution: a unix skb names its sender (UNIXCB pid); pipes, TCP and UDP through the
 * write ledger (ledger.c). Each queue is reported once: "peer KIND HOLDER BYTES", or when
 * its writer cannot be known, "unattributed KIND HOLDER BYTES".
 */
#include "sparc_helper.h"

#define MAX_PROCESSES 32768

struct foreign_visit {
	pid_t holder;
};

static void visit_foreign_file(struct collector *c, struct file *file, void *arg)
{
	struct foreign_visit *visit = arg;
	struct inode *inode = file_inode(file);

	if (S_ISFIFO(inode->i_mode) && inode->i_pipe) {
		visit_foreign_pipe(c, file, visit->holder);
	} else if (S_ISSOCK(inode->i_mode)) {
		struct socket *sock = sock_from_file(file);

		if (sock && sock->sk)
			visit_foreign_sock(c, sock->sk, visit->holder);
	}
}

void scan_system(struct collector *c)
{
	struct pid **pids = kvcalloc(MAX_PROCESSES, sizeof(*pids), GFP_KERNEL);
	struct task_struct *p;
	int n = 0, i;

	if (!pids) {
		c->overflow = true;
		return;
	}
	rcu_read_lock();
	for_each_process(p) {
		if (n == MAX_PROCESSES) {
			c->overflow = true;
			break;
		}
		if (!(p->flags & PF_KTHREAD))
			pids[n++] = get_pid(task_tgid(p));
	}
	rcu_read_unlock();
	for (i = 0; i < n; i++) {
		struct task_struct *task = get_pid_task(pids[i], PIDTYPE_TGID);
		struct foreign_visit visit = { .holder = pid_nr(pids[i]) };

		/* The excluded processes' own queues were visited with their files. */
		if (task && !is_excluded_pid(c, pids[i])) {
			c->pid = visit.holder;
			for_each_task_file(c, task, visit_foreign_file, &visit);
		}
		if (task)
			put_task_struct(task);
		put_pid(pids[i]);
		cond_resched();
	}
	kvfree(pids);
}
