// SPDX-License-Identifier: GPL-2.0
/* Sockets: payload of queued skbs (receive, write, retransmit, out-of-order, backlog), unix peers, listeners' children, page-frag caches. */
#include "sparc_helper.h"

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

void visit_sock(struct collector *c, struct sock *sk)
{
	if (c->drain)
		drain_sock(c, sk);
	else
		collect_sock(c, sk, 0);
}

/* ---- what excluded unix sockets sent to others ---- */

/* Datagrams sent without a connection (sendto a path) wait in the receiver's queue, which
 * no excluded process holds: after the excluded processes' own files, every process's
 * unix sockets are searched for skbs an excluded socket sent. */
void remember_sender(struct collector *c, struct file *file)
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

void scan_receivers(struct collector *c)
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

