// SPDX-License-Identifier: GPL-2.0
/*
 * sparc_helper: the write ledger — who wrote into which pipe, and from which local port a
 * process sent TCP or UDP data, recorded at write time from the moment the helper loads.
 *
 * Data an excluded process wrote into a pipe held open by someone else, or sent to a
 * receiver that has not read it, waits in a queue no excluded process holds any more (the
 * writer closed it, or exited). Nothing in that queue says who wrote it: pipe buffers are
 * plain pages, and a TCP or UDP skb belongs to its receiver once delivered. So kprobes on
 * the write paths (pipe_write; unix_stream_sendmsg, unix_stream_sendpage,
 * unix_dgram_sendmsg; tcp_sendmsg, tcp_sendpage, udp_sendmsg, udpv6_sendmsg) record the
 * pipe or the sending unix socket (with its inode number: a later object at the same
 * address replaces the records of the earlier one, which cannot have queued data any more),
 * or the protocol and local port, and the writing process; at a checkpoint a queue with
 * data is attributed to the excluded processes when one of them wrote to it. A unix skb
 * points to the socket that sent it, which it keeps alive while it waits.
 *
 * The ledger is a fixed table: when it is full a new record takes the place of an old one
 * and `ledger_lost` says how many were lost, so an attribution that may be missing is said.
 * A record holds a reference on the writer's struct pid, which tells a process that has
 * exited from a later one given the same number.
 */
#include "sparc_helper.h"
#include <linux/kprobes.h>
#include <linux/hash.h>
#include <net/inet_sock.h>

#define LEDGER_SLOTS 16384
#define LEDGER_PROBE 8

struct ledger_entry {
	u8 kind;
	u16 port;
	unsigned long ino;
	const void *pipe;
	struct pid *writer;
};

static struct ledger_entry *ledger;
static DEFINE_SPINLOCK(ledger_lock);
static unsigned long ledger_lost;
static unsigned int ledger_probes;

/* Records of one object (or port) share a window of LEDGER_PROBE slots. */
static unsigned int ledger_hash(u8 kind, const void *pipe, u16 port)
{
	return hash_64((unsigned long)pipe ^ ((u64)port << 40) ^ ((u64)kind << 56), ilog2(LEDGER_SLOTS));
}

static void ledger_record(u8 kind, const void *pipe, unsigned long ino, u16 port)
{
	struct pid *writer = task_tgid(current);
	struct pid *old[LEDGER_PROBE + 1] = { NULL };
	unsigned int h, i, slot = LEDGER_SLOTS, nold = 0;
	unsigned long flags;

	if (!ledger || !writer)
		return;
	h = ledger_hash(kind, pipe, port);
	spin_lock_irqsave(&ledger_lock, flags);
	for (i = 0; i < LEDGER_PROBE; i++) {
		struct ledger_entry *e = &ledger[(h + i) & (LEDGER_SLOTS - 1)];

		if (e->writer && e->kind == kind && e->pipe == pipe && e->port == port) {
			if (e->ino != ino) {
				/* An earlier object at this address: gone, and with it its data. */
				old[nold++] = e->writer;
				e->writer = NULL;
			} else if (e->writer == writer) {
				spin_unlock_irqrestore(&ledger_lock, flags);
				return;
			}
		}
		if (!e->writer && slot == LEDGER_SLOTS)
			slot = (h + i) & (LEDGER_SLOTS - 1);
	}
	if (slot == LEDGER_SLOTS) {
		slot = h;
		old[nold++] = ledger[slot].writer;
		ledger_lost++;
	}
	ledger[slot] = (struct ledger_entry){ .kind = kind, .port = port, .ino = ino, .pipe = pipe, .writer = get_pid(writer) };
	spin_unlock_irqrestore(&ledger_lock, flags);
	for (i = 0; i < nold; i++)
		put_pid(old[i]);
}

/* Whether one of the excluded processes wrote to this object (ino LEDGER_ANY_INO: an object
 * whose inode is gone, a closed socket) or from this port. */
bool ledger_attributes(struct collector *c, u8 kind, const void *pipe, unsigned long ino, u16 port)
{
	unsigned int h = ledger_hash(kind, pipe, port), i;
	unsigned long flags;
	bool found = false;

	if (!ledger)
		return false;
	spin_lock_irqsave(&ledger_lock, flags);
	for (i = 0; i < LEDGER_PROBE && !found; i++) {
		struct ledger_entry *e = &ledger[(h + i) & (LEDGER_SLOTS - 1)];

		if (e->writer && e->kind == kind && e->pipe == pipe && e->port == port && (ino == LEDGER_ANY_INO || e->ino == ino))
			found = is_excluded_pid(c, e->writer);
	}
	spin_unlock_irqrestore(&ledger_lock, flags);
	return found;
}

bool ledger_knows_port(u8 kind, u16 port)
{
	unsigned int h = ledger_hash(kind, NULL, port), i;
	unsigned long flags;
	bool found = false;

	if (!ledger)
		return false;
	spin_lock_irqsave(&ledger_lock, flags);
	for (i = 0; i < LEDGER_PROBE && !found; i++) {
		struct ledger_entry *e = &ledger[(h + i) & (LEDGER_SLOTS - 1)];

		found = e->writer && e->kind == kind && e->port == port;
	}
	spin_unlock_irqrestore(&ledger_lock, flags);
	return found;
}

/* When the ledger began to record (boot-time ns): writes before it are not in it. */
static u64 ledger_since_ns;

u64 ledger_since(void)
{
	return ledger_since_ns;
}

unsigned long ledger_lost_records(void)
{
	return READ_ONCE(ledger_lost);
}

unsigned int ledger_active_probes(void)
{
	return ledger_probes;
}

/* ---- probes: the first argument of each probed function, on entry ---- */

static int on_pipe_write(struct kprobe *p, struct pt_regs *regs)
{
	struct kiocb *iocb = (struct kiocb *)regs_get_kernel_argument(regs, 0);
	struct file *file = iocb ? iocb->ki_filp : NULL;

	if (file && file->private_data)
		ledger_record(LEDGER_PIPE, file->private_data, file_inode(file)->i_ino, 0);
	return 0;
}

static int on_inet_send(struct kprobe *p, struct pt_regs *regs, u8 kind)
{
	struct sock *sk = (struct sock *)regs_get_kernel_argument(regs, 0);

	if (sk)
		ledger_record(kind, NULL, 0, ntohs(inet_sk(sk)->inet_sport));
	return 0;
}

static int on_unix_send(struct kprobe *p, struct pt_regs *regs)
{
	struct socket *sock = (struct socket *)regs_get_kernel_argument(regs, 0);

	if (sock && sock->sk)
		ledger_record(LEDGER_UNIX, sock->sk, SOCK_INODE(sock)->i_ino, 0);
	return 0;
}

static int on_tcp_send(struct kprobe *p, struct pt_regs *regs)
{
	return on_inet_send(p, regs, LEDGER_TCP);
}

static int on_udp_send(struct kprobe *p, struct pt_regs *regs)
{
	return on_inet_send(p, regs, LEDGER_UDP);
}

static struct kprobe probes[] = {
	{ .symbol_name = "pipe_write", .pre_handler = on_pipe_write },
	{ .symbol_name = "tcp_sendmsg", .pre_handler = on_tcp_send },
	{ .symbol_name = "tcp_sendpage", .pre_handler = on_tcp_send },
	{ .symbol_name = "udp_sendmsg", .pre_handler = on_udp_send },
	{ .symbol_name = "udpv6_sendmsg", .pre_handler = on_udp_send },
	{ .symbol_name = "unix_stream_sendmsg", .pre_handler = on_unix_send },
	{ .symbol_name = "unix_stream_sendpage", .pre_handler = on_unix_send },
	{ .symbol_name = "unix_dgram_sendmsg", .pre_handler = on_unix_send },
};

int ledger_start(void)
{
	unsigned int i;

	ledger = vzalloc(LEDGER_SLOTS * sizeof(*ledger));
	if (!ledger)
		return -ENOMEM;
	ledger_since_ns = ktime_get_boottime_ns();
	for (i = 0; i < ARRAY_SIZE(probes); i++)
		if (!register_kprobe(&probes[i]))
			ledger_probes |= 1U << i;
	return 0;
}

void ledger_stop(void)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(probes); i++)
		if (ledger_probes & (1U << i))
			unregister_kprobe(&probes[i]);
	if (!ledger)
		return;
	for (i = 0; i < LEDGER_SLOTS; i++)
		put_pid(ledger[i].writer);
	vfree(ledger);
	ledger = NULL;
}
