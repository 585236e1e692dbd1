// SPDX-License-Identifier: GPL-2.0
/*
 * sparc_helper: tells the sparc agent where the kernel keeps data of chosen processes.
 *
 * The agent writes "pids P1 P2 ..." to /proc/sparc_helper and reads back one line per
 * physical byte range: "KIND PID PHYS LEN" (hex PHYS and LEN), KIND one of tty, pipe,
 * socket, kstack. Ranges cover data only — buffer contents, never the structures that
 * describe them — so zeroing them in a saved image leaves the kernel consistent:
 *
 *   tty     n_tty read and echo buffers, flip buffers (queued and free), the tty write
 *           buffer, the serial driver's transmit ring; for a pty also the other end.
 *   pipe    pages of pipe and FIFO buffers owned by the pipe (or vmspliced and
 *           mapped by nobody any more), and its spare page.
 *   socket  payload of queued skbs: receive and write queues, TCP retransmit and
 *           out-of-order queues, unix peers' receive queues, children of listeners,
 *           and datagrams the processes sent that wait in anyone's unix socket.
 *   kstack  the unused part of each thread's kernel stack (below its saved stack
 *           pointer), which keeps stale copies of data the thread moved through the kernel.
 *
 * The processes must be frozen. The helper only reads pointers; it copies no data.
 * "drain P1 P2 ..." is the restore's counterpart: it drops those buffers (see draining)
 * and answers "dropped 0 0 COUNT".
 * struct n_tty_data is private to n_tty.c: the agent reads its field offsets from BTF
 * and passes them as module parameters.
 */
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

static long n_tty_read_buf_offset = -1;
module_param(n_tty_read_buf_offset, long, 0444);
MODULE_PARM_DESC(n_tty_read_buf_offset, "offset of read_buf in struct n_tty_data (from BTF)");
static long n_tty_echo_buf_offset = -1;
module_param(n_tty_echo_buf_offset, long, 0444);
MODULE_PARM_DESC(n_tty_echo_buf_offset, "offset of echo_buf in struct n_tty_data (from BTF)");
static long n_tty_buf_size = 4096;
module_param(n_tty_buf_size, long, 0444);
MODULE_PARM_DESC(n_tty_buf_size, "N_TTY_BUF_SIZE");

#define MAX_OUTPUT (8 << 20)
#define MAX_FILES 4096

struct collector {
	char *buf;
	size_t len;
	bool overflow;
	bool overflow_told;
	pid_t pid;
	/* Drop the buffers instead of reporting them (at restore, see "draining"). */
	bool drain;
	unsigned long dropped;
	/* The excluded processes' unix sockets: what they sent may wait in any socket. */
	struct sock **senders;
	int nsenders;
};

#define MAX_SENDERS 16384

static void emit_phys(struct collector *c, const char *kind, phys_addr_t phys, size_t len)
{
	int n;

	if (!len || c->overflow)
		return;
	if (c->len + 64 > MAX_OUTPUT) {
		c->overflow = true;
		return;
	}
	n = scnprintf(c->buf + c->len, MAX_OUTPUT - c->len, "%s %d %llx %zx\n", kind, c->pid,
		      (unsigned long long)phys, len);
	c->len += n;
}

/* Emits the physical pages behind a kernel virtual range (linear map or vmalloc). */
static void emit_virt(struct collector *c, const char *kind, const void *addr, size_t len)
{
	while (len > 0) {
		unsigned long off = offset_in_page(addr);
		size_t n = min_t(size_t, len, PAGE_SIZE - off);
		struct page *pg = NULL;

		if (is_vmalloc_addr(addr))
			pg = vmalloc_to_page(addr);
		else if (virt_addr_valid(addr))
			pg = virt_to_page(addr);
		if (pg)
			emit_phys(c, kind, page_to_phys(pg) + off, n);
		addr += n;
		len -= n;
	}
}

static void emit_page(struct collector *c, const char *kind, struct page *pg, size_t off, size_t len)
{
	if (pg)
		emit_phys(c, kind, page_to_phys(pg) + off, len);
}

/* ---- terminals ---- */

/* Under the consumer's lock (flush_to_ldisc frees buffers from the head); producers only
 * append at the tail, publishing `next` with a release store. */
static void collect_flip(struct collector *c, struct tty_port *port)
{
	struct tty_bufhead *buf = &port->buf;
	struct tty_buffer *b;
	struct llist_node *n;

	tty_buffer_lock_exclusive(port);
	for (b = buf->head; b; b = smp_load_acquire(&b->next))
		if (b != &buf->sentinel && b->size > 0)
			emit_virt(c, "tty", char_buf_ptr(b, 0), 2 * (size_t)b->size);
	for (n = READ_ONCE(buf->free.first); n; n = READ_ONCE(n->next)) {
		b = llist_entry(n, struct tty_buffer, free);
		if (b->size > 0)
			emit_virt(c, "tty", char_buf_ptr(b, 0), 2 * (size_t)b->size);
	}
	tty_buffer_unlock_exclusive(port);
}

static void collect_one_tty(struct collector *c, struct tty_struct *tty)
{
	struct tty_ldisc *ld = tty->ldisc;

	if (ld && ld->ops && ld->ops->num == N_TTY && tty->disc_data && n_tty_read_buf_offset >= 0 &&
	    n_tty_echo_buf_offset >= 0) {
		emit_virt(c, "tty", (char *)tty->disc_data + n_tty_read_buf_offset, n_tty_buf_size);
		emit_virt(c, "tty", (char *)tty->disc_data + n_tty_echo_buf_offset, n_tty_buf_size);
	}
	if (tty->write_buf && tty->write_cnt > 0)
		emit_virt(c, "tty", tty->write_buf, tty->write_cnt);
	if (tty->port)
		collect_flip(c, tty->port);
	if (tty->driver && tty->driver->type == TTY_DRIVER_TYPE_SERIAL && tty->driver->name &&
	    !strcmp(tty->driver->name, "ttyS") && tty->driver_data) {
		struct uart_state *state = tty->driver_data;

		if (state->xmit.buf)
			emit_virt(c, "tty", state->xmit.buf, UART_XMIT_SIZE);
	}
}

static void collect_tty(struct collector *c, struct tty_struct *tty)
{
	collect_one_tty(c, tty);
	if (tty->link)
		collect_one_tty(c, tty->link);
}

static bool is_tty_major(unsigned int major)
{
	return major == TTY_MAJOR || major == TTYAUX_MAJOR ||
	       (major >= UNIX98_PTY_MASTER_MAJOR && major < UNIX98_PTY_SLAVE_MAJOR + UNIX98_PTY_MAJOR_COUNT);
}

/* ---- pipes ---- */

static void collect_pipe(struct collector *c, struct pipe_inode_info *pipe)
{
	unsigned int i;

	if (!pipe->bufs || !pipe->ring_size)
		return;
	pipe_lock(pipe);
	for (i = pipe->tail; i != pipe->head; i++) {
		struct pipe_buffer *b = &pipe->bufs[i & (pipe->ring_size - 1)];

		/* A page owned by the pipe (no mapping) is data through and through, and so is
		 * a vmspliced user page nobody maps any more (the writer unmapped it: only the
		 * pipe holds it). Spliced page cache and user pages still mapped belong to
		 * others (their own exclusion covers them) and are left alone. */
		if (b->page && (!b->page->mapping || (PageAnon(b->page) && !page_mapped(b->page))))
			emit_page(c, "pipe", b->page, 0, PAGE_SIZE);
	}
	if (pipe->tmp_page)
		emit_page(c, "pipe", pipe->tmp_page, 0, PAGE_SIZE);
	pipe_unlock(pipe);
}

/* ---- sockets ---- */

static void collect_skb(struct collector *c, struct sk_buff *skb, int depth)
{
	struct sk_buff *frag;
	int i;

	if (skb->data && skb_tail_pointer(skb) > skb->data)
		emit_virt(c, "socket", skb->data, skb_tail_pointer(skb) - skb->data);
	for (i = 0; i < skb_shinfo(skb)->nr_frags; i++) {
		skb_frag_t *f = &skb_shinfo(skb)->frags[i];

		emit_page(c, "socket", skb_frag_page(f), skb_frag_off(f), skb_frag_size(f));
	}
	if (depth < 4)
		skb_walk_frags(skb, frag) collect_skb(c, frag, depth + 1);
}

/* The payload of a queue's skbs; with from, only those that socket sent. */
static void collect_queue_from(struct collector *c, struct sk_buff_head *q, struct sock *from)
{
	struct sk_buff *skb;
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	skb_queue_walk(q, skb)
		if (!from || skb->sk == from)
			collect_skb(c, skb, 0);
	spin_unlock_irqrestore(&q->lock, flags);
}

static void collect_queue(struct collector *c, struct sk_buff_head *q)
{
	collect_queue_from(c, q, NULL);
}

static void collect_rbtree(struct collector *c, struct rb_root *root)
{
	struct rb_node *n;

	for (n = rb_first(root); n; n = rb_next(n))
		collect_skb(c, rb_to_skb(n), 0);
}

static bool is_tcp(struct sock *sk)
{
	return (sk->sk_family == AF_INET || sk->sk_family == AF_INET6) && sk->sk_protocol == IPPROTO_TCP &&
	       sk->sk_type == SOCK_STREAM;
}

/* Skbs received while the socket was owned wait in its backlog (under its spinlock). */
static void collect_backlog(struct collector *c, struct sock *sk)
{
	struct sk_buff *skb;

	spin_lock_bh(&sk->sk_lock.slock);
	for (skb = sk->sk_backlog.head; skb; skb = skb->next)
		collect_skb(c, skb, 0);
	spin_unlock_bh(&sk->sk_lock.slock);
}

static void collect_sock(struct collector *c, struct sock *sk, int depth);

#define MAX_CHILDREN 256

/* Connections a TCP listener has accepted for the process but it has not taken yet. They
 * are held (so they outlive the queue's lock) and collected with the lock released, since
 * each is collected under its own socket lock, which sleeps. */
static void collect_tcp_children(struct collector *c, struct sock *sk)
{
	struct request_sock_queue *queue = &inet_csk(sk)->icsk_accept_queue;
	struct request_sock *req;
	struct sock **children = kvcalloc(MAX_CHILDREN, sizeof(*children), GFP_KERNEL);
	int n = 0, i;

	if (!children) {
		c->overflow = true;
		return;
	}
	spin_lock_bh(&queue->rskq_lock);
	for (req = queue->rskq_accept_head; req; req = req->dl_next) {
		if (!req->sk)
			continue;
		if (n == MAX_CHILDREN) {
			c->overflow = true;
			break;
		}
		sock_hold(req->sk);
		children[n++] = req->sk;
	}
	spin_unlock_bh(&queue->rskq_lock);
	for (i = 0; i < n; i++) {
		collect_sock(c, children[i], 1);
		sock_put(children[i]);
	}
	kvfree(children);
}

/*
 * The kernel's rules are kept: a queue is walked under its lock; a TCP socket's
 * retransmit and out-of-order trees and its write queue only with the socket owned
 * (lock_sock: softirqs then queue what arrives in the backlog, collected too); a unix
 * peer is held while its queue is read.
 */
static void collect_sock(struct collector *c, struct sock *sk, int depth)
{
	if (sk->sk_family == AF_UNIX) {
		struct sock *peer = depth == 0 ? unix_peer_get(sk) : NULL;
		struct sk_buff *skb;
		unsigned long flags;

		collect_queue(c, &sk->sk_receive_queue);
		collect_queue(c, &sk->sk_write_queue);
		/* What this socket sent waits in its peer's receive queue (a datagram peer's
		 * queue also holds what others sent it: theirs is not this process's data). */
		if (peer) {
			collect_queue_from(c, &peer->sk_receive_queue, sk);
			sock_put(peer);
		}
		/* A listener's queue holds embryonic sockets that already carry data. */
		if (sk->sk_state == TCP_LISTEN && depth == 0) {
			spin_lock_irqsave(&sk->sk_receive_queue.lock, flags);
			skb_queue_walk(&sk->sk_receive_queue, skb)
				if (skb->sk && skb->sk != sk)
					collect_sock(c, skb->sk, depth + 1);
			spin_unlock_irqrestore(&sk->sk_receive_queue.lock, flags);
		}
	} else if (is_tcp(sk)) {
		if (sk->sk_state == TCP_LISTEN) {
			if (depth == 0)
				collect_tcp_children(c, sk);
			return;
		}
		lock_sock(sk);
		collect_queue(c, &sk->sk_receive_queue);
		collect_queue(c, &sk->sk_write_queue);
		collect_rbtree(c, &sk->tcp_rtx_queue);
		collect_rbtree(c, &tcp_sk(sk)->out_of_order_queue);
		collect_backlog(c, sk);
		/* The socket's own page-frag cache keeps what it sent after the skbs are gone. */
		if (sk->sk_frag.page)
			emit_phys(c, "socket", page_to_phys(sk->sk_frag.page), sk->sk_frag.size);
		release_sock(sk);
	} else {
		collect_queue(c, &sk->sk_receive_queue);
		collect_queue(c, &sk->sk_write_queue);
	}
}

/* ---- files of a process ---- */

/* The files of a process are taken in batches of MAX_FILES (references held, so the
 * work on them happens outside the fd table's lock); a process may hold any number. */
struct file_list {
	struct file *files[MAX_FILES];
	int count;
	unsigned int next_fd;
};

static int remember_file(const void *arg, struct file *file, unsigned int fd)
{
	struct file_list *list = (struct file_list *)arg;

	if (list->count >= MAX_FILES)
		return 1;
	list->files[list->count++] = get_file(file);
	list->next_fd = fd + 1;
	return 0;
}

/* ---- draining ---- */

/*
 * At restore, before the guest runs on, "drain P1 P2 ..." drops the unread data of the
 * excluded processes' pipes, sockets and terminals. Their pages were zeroed in the saved
 * image; a reader that is not excluded must not be handed those zeros. With the buffers
 * gone and the excluded writer killed right after, the reader sees end of data (pipes,
 * unix sockets), a reset (TCP) or no pending input (terminals), as if the writer had died
 * before writing.
 */

static void drain_pipe(struct collector *c, struct pipe_inode_info *pipe)
{
	if (!pipe->bufs || !pipe->ring_size)
		return;
	pipe_lock(pipe);
	while (pipe->tail != pipe->head) {
		struct pipe_buffer *b = &pipe->bufs[pipe->tail & (pipe->ring_size - 1)];

		if (b->ops)
			pipe_buf_release(pipe, b);
		pipe->tail++;
		c->dropped++;
	}
	pipe_unlock(pipe);
	wake_up_interruptible_all(&pipe->wr_wait);
}

/* Unlinks and frees a queue's skbs (with from, only those that socket sent). */
static void drop_queue_from(struct collector *c, struct sk_buff_head *q, struct sock *from)
{
	struct sk_buff *skb, *tmp;
	struct sk_buff_head dropped;
	unsigned long flags;

	__skb_queue_head_init(&dropped);
	spin_lock_irqsave(&q->lock, flags);
	skb_queue_walk_safe(q, skb, tmp) {
		if (from && skb->sk != from)
			continue;
		__skb_unlink(skb, q);
		__skb_queue_tail(&dropped, skb);
		c->dropped++;
	}
	spin_unlock_irqrestore(&q->lock, flags);
	__skb_queue_purge(&dropped);
}

static void drain_sock(struct collector *c, struct sock *sk)
{
	if (sk->sk_family == AF_UNIX) {
		struct sock *peer = unix_peer_get(sk);

		drop_queue_from(c, &sk->sk_receive_queue, NULL);
		if (peer) {
			drop_queue_from(c, &peer->sk_receive_queue, sk);
			sock_put(peer);
		}
	} else if ((sk->sk_family == AF_INET || sk->sk_family == AF_INET6) && sk->sk_protocol == IPPROTO_TCP &&
		   sk->sk_type == SOCK_STREAM && sk->sk_state != TCP_LISTEN && sk->sk_state != TCP_CLOSE &&
		   sk->sk_prot && sk->sk_prot->diag_destroy) {
		/* Unacknowledged data would be sent again, and closing sends what is queued:
		 * zeros on the wire. An abort (as ss -K does) resets the connection instead. */
		if (!skb_queue_empty(&sk->sk_write_queue) || !RB_EMPTY_ROOT(&sk->tcp_rtx_queue) ||
		    !skb_queue_empty(&sk->sk_receive_queue)) {
			sk->sk_prot->diag_destroy(sk, ECONNABORTED);
			c->dropped++;
		}
	}
}

static void drain_tty(struct collector *c, struct tty_struct *tty)
{
	tty_ldisc_flush(tty);
	tty_driver_flush_buffer(tty);
	if (tty->link) {
		tty_ldisc_flush(tty->link);
		tty_driver_flush_buffer(tty->link);
	}
	c->dropped++;
}

/* The kernel buffers behind a terminal, or behind one open file: collected, or under
 * "drain" dropped. */
static void visit_tty(struct collector *c, struct tty_struct *tty)
{
	if (c->drain)
		drain_tty(c, tty);
	else
		collect_tty(c, tty);
}

static void visit_file(struct collector *c, struct file *file)
{
	struct inode *inode = file_inode(file);

	if (S_ISFIFO(inode->i_mode) && inode->i_pipe) {
		if (c->drain)
			drain_pipe(c, inode->i_pipe);
		else
			collect_pipe(c, inode->i_pipe);
	} else if (S_ISSOCK(inode->i_mode)) {
		struct socket *sock = sock_from_file(file);

		if (sock && sock->sk) {
			if (c->drain)
				drain_sock(c, sock->sk);
			else
				collect_sock(c, sock->sk, 0);
		}
	} else if (S_ISCHR(inode->i_mode) && is_tty_major(imajor(inode))) {
		struct tty_file_private *priv = file->private_data;

		if (priv && priv->tty)
			visit_tty(c, priv->tty);
	}
}

/* ---- what excluded unix sockets sent to others ---- */

/* Datagrams sent without a connection (sendto a path) wait in the receiver's queue, which
 * no excluded process holds: after the excluded processes' own files, every process's
 * unix sockets are searched for skbs an excluded socket sent. */
static void remember_sender(struct collector *c, struct file *file)
{
	struct inode *inode = file_inode(file);
	struct socket *sock;

	if (!S_ISSOCK(inode->i_mode))
		return;
	sock = sock_from_file(file);
	if (!sock || !sock->sk || sock->sk->sk_family != AF_UNIX)
		return;
	if (c->nsenders >= MAX_SENDERS) {
		c->overflow = true;
		return;
	}
	c->senders[c->nsenders++] = sock->sk;
}

static bool is_sender(struct collector *c, struct sock *sk)
{
	int i;

	for (i = 0; i < c->nsenders; i++)
		if (c->senders[i] == sk)
			return true;
	return false;
}

struct sender_scan {
	struct collector *c;
	struct sk_buff_head *dropped;
};

static int scan_receiver(const void *arg, struct file *file, unsigned int fd)
{
	const struct sender_scan *scan = arg;
	struct collector *c = scan->c;
	struct inode *inode = file_inode(file);
	struct socket *sock;
	struct sk_buff_head *q;
	struct sk_buff *skb, *tmp;
	unsigned long flags;

	if (!S_ISSOCK(inode->i_mode))
		return 0;
	sock = sock_from_file(file);
	if (!sock || !sock->sk || sock->sk->sk_family != AF_UNIX || is_sender(c, sock->sk))
		return 0;
	q = &sock->sk->sk_receive_queue;
	spin_lock_irqsave(&q->lock, flags);
	skb_queue_walk_safe(q, skb, tmp) {
		if (!skb->sk || skb->sk == sock->sk || !is_sender(c, skb->sk))
			continue;
		if (c->drain) {
			__skb_unlink(skb, q);
			__skb_queue_tail(scan->dropped, skb);
			c->dropped++;
		} else {
			collect_skb(c, skb, 0);
		}
	}
	spin_unlock_irqrestore(&q->lock, flags);
	return 0;
}

static void scan_receivers(struct collector *c)
{
	struct task_struct *p;
	struct sk_buff_head dropped;
	struct sender_scan scan = { .c = c, .dropped = &dropped };

	if (!c->nsenders)
		return;
	__skb_queue_head_init(&dropped);
	rcu_read_lock();
	for_each_process(p) {
		c->pid = task_pid_nr(p);
		task_lock(p);
		if (p->files)
			iterate_fd(p->files, 0, scan_receiver, &scan);
		task_unlock(p);
	}
	rcu_read_unlock();
	/* Freed outside every lock: a datagram can carry descriptors to release. */
	__skb_queue_purge(&dropped);
}

static void collect_stacks(struct collector *c, struct task_struct *task)
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

static int collect_pid(struct collector *c, pid_t nr)
{
	struct pid *pid = find_get_pid(nr);
	struct task_struct *task;
	struct file_list *list;
	struct tty_struct *ctty = NULL;
	struct sighand_struct *sighand;
	unsigned long flags;
	int i, more;

	if (!pid)
		return -ESRCH;
	task = get_pid_task(pid, PIDTYPE_PID);
	put_pid(pid);
	if (!task)
		return -ESRCH;
	c->pid = nr;

	list = kvzalloc(sizeof(*list), GFP_KERNEL);
	if (!list) {
		put_task_struct(task);
		return -ENOMEM;
	}
	do {
		list->count = 0;
		task_lock(task);
		more = task->files ? iterate_fd(task->files, list->next_fd, remember_file, list) : 0;
		task_unlock(task);
		for (i = 0; i < list->count; i++) {
			remember_sender(c, list->files[i]);
			visit_file(c, list->files[i]);
			fput(list->files[i]);
		}
	} while (more);
	kvfree(list);

	/* The controlling terminal carries what the process read and printed. */
	rcu_read_lock();
	sighand = rcu_dereference(task->sighand);
	if (sighand) {
		spin_lock_irqsave(&sighand->siglock, flags);
		ctty = tty_kref_get(task->signal->tty);
		spin_unlock_irqrestore(&sighand->siglock, flags);
	}
	rcu_read_unlock();
	if (ctty) {
		visit_tty(c, ctty);
		tty_kref_put(ctty);
	}
	if (!c->drain)
		collect_stacks(c, task);
	put_task_struct(task);
	return 0;
}

/* ---- /proc/sparc_helper ---- */

/* One open of /proc/sparc_helper. Writes and reads on the same descriptor from several
 * threads are serialised, so the output length can never pass MAX_OUTPUT. */
struct session {
	struct mutex lock;
	struct collector c;
	bool done;
};

static int helper_open(struct inode *inode, struct file *file)
{
	struct session *s = kzalloc(sizeof(*s), GFP_KERNEL);

	if (!s)
		return -ENOMEM;
	s->c.buf = kvmalloc(MAX_OUTPUT, GFP_KERNEL);
	if (!s->c.buf) {
		kfree(s);
		return -ENOMEM;
	}
	mutex_init(&s->lock);
	file->private_data = s;
	return 0;
}

static int helper_release(struct inode *inode, struct file *file)
{
	struct session *s = file->private_data;

	mutex_destroy(&s->lock);
	kvfree(s->c.buf);
	kfree(s);
	return 0;
}

static ssize_t helper_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	struct session *s = file->private_data;
	char *text, *p, *tok;
	int rc = 0;

	if (count > 65536)
		return -E2BIG;
	text = memdup_user_nul(ubuf, count);
	if (IS_ERR(text))
		return PTR_ERR(text);
	p = text;
	tok = strsep(&p, " \n");
	if (!tok || (strcmp(tok, "pids") && strcmp(tok, "drain"))) {
		kfree(text);
		return -EINVAL;
	}
	mutex_lock(&s->lock);
	s->c.drain = !strcmp(tok, "drain");
	s->c.nsenders = 0;
	s->c.senders = kvcalloc(MAX_SENDERS, sizeof(*s->c.senders), GFP_KERNEL);
	if (!s->c.senders) {
		mutex_unlock(&s->lock);
		kfree(text);
		return -ENOMEM;
	}
	while ((tok = strsep(&p, " \n")) != NULL) {
		int nr;

		if (!*tok)
			continue;
		if (kstrtoint(tok, 10, &nr) || nr <= 0) {
			rc = -EINVAL;
			break;
		}
		rc = collect_pid(&s->c, nr);
		if (rc == -ESRCH) {
			if (s->c.len + 64 > MAX_OUTPUT)
				s->c.overflow = true;
			else
				s->c.len += scnprintf(s->c.buf + s->c.len, MAX_OUTPUT - s->c.len, "gone %d 0 0\n", nr);
			rc = 0;
		} else if (rc) {
			break;
		}
	}
	if (!rc)
		scan_receivers(&s->c);
	kvfree(s->c.senders);
	s->c.senders = NULL;
	if (s->c.drain && s->c.len + 64 <= MAX_OUTPUT)
		s->c.len += scnprintf(s->c.buf + s->c.len, MAX_OUTPUT - s->c.len, "dropped 0 0 %lx\n", s->c.dropped);
	/* emit_phys keeps 64 bytes free, so this line always fits. */
	if (s->c.overflow && !s->c.overflow_told && s->c.len + 16 <= MAX_OUTPUT) {
		s->c.overflow_told = true;
		s->c.len += scnprintf(s->c.buf + s->c.len, MAX_OUTPUT - s->c.len, "overflow 0 0 0\n");
	}
	mutex_unlock(&s->lock);
	kfree(text);
	return rc ? rc : count;
}

static ssize_t helper_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	struct session *s = file->private_data;
	ssize_t n;

	mutex_lock(&s->lock);
	n = simple_read_from_buffer(ubuf, count, ppos, s->c.buf, s->c.len);
	mutex_unlock(&s->lock);
	return n;
}

static const struct proc_ops helper_ops = {
	.proc_open = helper_open,
	.proc_release = helper_release,
	.proc_write = helper_write,
	.proc_read = helper_read,
	.proc_lseek = default_llseek,
};

static struct proc_dir_entry *entry;

static int __init helper_init(void)
{
	entry = proc_create("sparc_helper", 0600, NULL, &helper_ops);
	return entry ? 0 : -ENOMEM;
}

static void __exit helper_exit(void)
{
	proc_remove(entry);
}

module_init(helper_init);
module_exit(helper_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("sparc: physical ranges of kernel buffers holding a process's data");
