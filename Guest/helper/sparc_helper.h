// SPDX-License-Identifier: GPL-2.0
/*
 * sparc_helper: what the channels of the helper share (see core.c for the interface).
 * One file per kind of kernel memory the exclusion reaches: tty.c, pipe.c, socket.c,
 * kstack.c, memory.c, with the write ledger (ledger.c) and the scan of queues others hold
 * (peers.c); core.c holds /proc/sparc_helper, the output and the walk over a
 * process's files.
 */
#ifndef SPARC_HELPER_H
#define SPARC_HELPER_H

#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/sched/signal.h>
#include <linux/sched/task_stack.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/pipe_fs_i.h>
#include <linux/net.h>
#include <linux/skbuff.h>
#include <linux/tty.h>
#include <linux/tty_driver.h>
#include <linux/tty_flip.h>
#include <linux/serial_core.h>
#include <linux/vmalloc.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/major.h>
#include <linux/mutex.h>
#include <net/sock.h>
#include <net/tcp.h>
#include <net/af_unix.h>
#include <net/inet_connection_sock.h>

#define MAX_OUTPUT (8 << 20)
#define MAX_FILES 4096

struct collector {
	char *buf;
	size_t len;
	bool overflow;
	bool overflow_told;
	/* A terminal's n_tty buffers could not be reached (offsets unset): told once. */
	bool blind_told;
	pid_t pid;
	/* Drop the buffers instead of reporting them (at restore, see "draining"). */
	bool drain;
	unsigned long dropped;
	/* The excluded processes' unix sockets: what they sent may wait in any socket. */
	struct sock **senders;
	int nsenders;
	/* Who is excluded: the live processes (their struct pids), and the numbers of their
	 * descendants that have exited (a dead struct pid with such a number was one of them). */
	struct pid **live;
	int nlive;
	pid_t *exited;
	int nexited;
	/* Queues already seen by the system scan (one report each). */
	const void **seen;
	/* The sockets the excluded processes' unix sockets are connected to: whoever holds one
	 * talks with them (a terminal multiplexer's server, journald, PID 1). */
	struct sock **peers;
	int npeers;
};

#define MAX_EXITED 65536
#define MAX_SEEN 16384

#define MAX_SENDERS 16384

extern long n_tty_read_buf_offset;
extern long n_tty_echo_buf_offset;
extern long n_tty_buf_size;

/* Output (core.c): one line per physical byte range, "KIND PID PHYS LEN". */
void emit_phys(struct collector *c, const char *kind, phys_addr_t phys, size_t len);
void emit_virt(struct collector *c, const char *kind, const void *addr, size_t len);
void emit_page(struct collector *c, const char *kind, struct page *pg, size_t off, size_t len);
void emit_line(struct collector *c, const char *fmt, ...) __printf(2, 3);

/* Terminals (tty.c): collected, or under "drain" dropped. */
bool is_tty_major(unsigned int major);
void visit_tty(struct collector *c, struct tty_struct *tty);

/* Pipes and FIFOs (pipe.c). */
void visit_pipe(struct collector *c, struct pipe_inode_info *pipe);

/* Sockets (socket.c), and what the excluded unix sockets sent to anyone's. */
void visit_sock(struct collector *c, struct sock *sk);
void remember_sender(struct collector *c, struct file *file);

/* Whether a process (a thread group's struct pid) is one of the excluded ones (core.c). */
bool is_excluded_pid(struct collector *c, struct pid *pid);
/* Whether the system scan meets this queue for the first time. */
bool first_sight(struct collector *c, const void *queue);
/* Calls fn for every open file of a task, in batches taken under the table's lock. */
void for_each_task_file(struct collector *c, struct task_struct *task, void (*fn)(struct collector *, struct file *, void *), void *arg);

/* The write ledger (ledger.c): who wrote into which pipe, or sent from which local port. */
enum ledger_kind { LEDGER_PIPE = 1, LEDGER_TCP, LEDGER_UDP, LEDGER_UNIX };
#define LEDGER_ANY_INO ULONG_MAX
int ledger_start(void);
void ledger_stop(void);
bool ledger_attributes(struct collector *c, u8 kind, const void *pipe, unsigned long ino, u16 port);
bool ledger_knows_port(u8 kind, u16 port);
unsigned long ledger_lost_records(void);
u64 ledger_since(void);
unsigned int ledger_active_probes(void);

/* Queues others hold that the excluded processes wrote into (pipe.c, socket.c), found by
 * the system scan (peers.c): collected, or under "drain" dropped; each reported once. */
void visit_foreign_pipe(struct collector *c, struct file *file, pid_t holder);
void visit_foreign_sock(struct collector *c, struct sock *sk, pid_t holder);
void scan_system(struct collector *c);

/* Kernel stacks (kstack.c). */
void collect_stacks(struct collector *c, struct task_struct *task);

/* Free memory and swap (memory.c): where the host finds their state at the pause. */
int describe_memory(struct collector *c, unsigned long swap_info_addr, unsigned long nr_swapfiles_addr);

#endif
