// SPDX-License-Identifier: GPL-2.0
/* Sockets: payload of queued skbs (receive, write, retransmit, out-of-order, backlog), unix peers, listeners' children, page-frag caches. */
#include "sparc_helper.h"
#include <net/udp.h>
#include <net/ip.h>
#include <net/route.h>
#include <linux/ipv6.h>
#include <net/ipv6.h>

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
			if (c->peers && c->npeers < MAX_SENDERS)
				c->peers[c->npeers++] = peer;
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

/* ---- queues others hold ---- */

/* Whether an excluded process sent this unix skb: from one of their open sockets, or from
 * a socket the ledger saw one of them (or a descendant that has exited since) send on — a
 * stream whose sender closed it or died; the skb keeps that socket alive while it waits.
 * With SO_PASSCRED the skb names its sender's pid too. */
static bool unix_skb_excluded(struct collector *c, struct sk_buff *skb, struct sock *receiver)
{
	struct socket *sender_socket;
	unsigned long ino;

	if (!skb->sk || skb->sk == receiver)
		return false;
	if (is_sender(c, skb->sk))
		return true;
	if (UNIXCB(skb).pid && is_excluded_pid(c, UNIXCB(skb).pid))
		return true;
	/* sock_orphan() clears sk_socket under this lock: the inode is read while it stands. */
	read_lock(&skb->sk->sk_callback_lock);
	sender_socket = skb->sk->sk_socket;
	ino = sender_socket ? SOCK_INODE(sender_socket)->i_ino : LEDGER_ANY_INO;
	read_unlock(&skb->sk->sk_callback_lock);
	return ledger_attributes(c, LEDGER_UNIX, skb->sk, ino, 0);
}

/* Whether this socket is connected with one of the excluded processes' sockets, either way. */
static bool talks_with_excluded(struct collector *c, struct sock *sk)
{
	struct sock *peer = unix_peer_get(sk);
	bool talks = peer && is_sender(c, peer);
	int i;

	if (peer)
		sock_put(peer);
	for (i = 0; !talks && c->peers && i < c->npeers; i++)
		talks = c->peers[i] == sk;
	return talks;
}

static void visit_foreign_unix(struct collector *c, struct sock *sk, pid_t holder)
{
	struct sk_buff_head *q = &sk->sk_receive_queue;
	struct sk_buff_head dropped;
	struct sk_buff *skb, *tmp;
	unsigned long flags;
	size_t bytes = 0;

	/* Compared as pointers only: a peer socket freed since is never dereferenced. */
	if (!c->drain && talks_with_excluded(c, sk))
		emit_line(c, "talked unix %d 0\n", holder);

	__skb_queue_head_init(&dropped);
	spin_lock_irqsave(&q->lock, flags);
	skb_queue_walk_safe(q, skb, tmp) {
		if (!unix_skb_excluded(c, skb, sk))
			continue;
		bytes += skb->len;
		if (c->drain) {
			__skb_unlink(skb, q);
			__skb_queue_tail(&dropped, skb);
			c->dropped++;
		} else {
			collect_skb(c, skb, 0);
		}
	}
	spin_unlock_irqrestore(&q->lock, flags);
	/* Freed outside the lock: a datagram can carry descriptors to release. */
	__skb_queue_purge(&dropped);
	if (bytes)
		emit_line(c, "peer unix %d %zx\n", holder, bytes);
}

static bool is_local_v4(struct sock *sk, __be32 addr)
{
	return ipv4_is_loopback(addr) || inet_addr_type(sock_net(sk), addr) == RTN_LOCAL;
}

static size_t queue_bytes(struct sk_buff_head *q)
{
	struct sk_buff *skb;
	unsigned long flags;
	size_t bytes = 0;

	spin_lock_irqsave(&q->lock, flags);
	skb_queue_walk(q, skb)
		bytes += skb->len;
	spin_unlock_irqrestore(&q->lock, flags);
	return bytes;
}

/* skb_rbtree_purge, which is not exported. */
static void purge_rbtree(struct rb_root *root)
{
	struct rb_node *p = rb_first(root);

	while (p) {
		struct sk_buff *skb = rb_entry(p, struct sk_buff, rbnode);

		p = rb_next(p);
		rb_erase(&skb->rbnode, root);
		kfree_skb(skb);
	}
}

/* A TCP connection whose other end is on this machine: what waits to be read came from
 * that end's port, which the ledger knows the senders of. Dropping part of a stream would
 * break it: at restore the connection is reset instead (its reader gets ECONNRESET). */
static void visit_foreign_tcp(struct collector *c, struct sock *sk, pid_t holder)
{
	u16 peer_port = ntohs(inet_sk(sk)->inet_dport);
	bool local = sk->sk_family == AF_INET ? is_local_v4(sk, sk->sk_daddr)
#if IS_ENABLED(CONFIG_IPV6)
					      : ipv6_addr_loopback(&sk->sk_v6_daddr) ||
							(ipv6_addr_v4mapped(&sk->sk_v6_daddr) &&
							 is_local_v4(sk, sk->sk_v6_daddr.s6_addr32[3]));
#else
					      : false;
#endif
	size_t bytes;

	if (!local || sk->sk_state == TCP_LISTEN || sk->sk_state == TCP_CLOSE)
		return;
	bytes = queue_bytes(&sk->sk_receive_queue);
	if (!bytes && RB_EMPTY_ROOT(&tcp_sk(sk)->out_of_order_queue))
		return;
	if (!ledger_attributes(c, LEDGER_TCP, NULL, 0, peer_port)) {
		/* Sent before the ledger began, or its record was lost: nobody can tell. */
		if (!c->drain && (!ledger_knows_port(LEDGER_TCP, peer_port) || ledger_lost_records()))
			emit_line(c, "unattributed tcp %d %zx\n", holder, bytes);
		return;
	}
	if (c->drain) {
		/* The unread data goes first (an abort alone leaves it to be read: zeros), and the
		 * read position moves past it, so that nothing counts it as waiting any more. */
		lock_sock(sk);
		__skb_queue_purge(&sk->sk_receive_queue);
		purge_rbtree(&tcp_sk(sk)->out_of_order_queue);
		tcp_sk(sk)->ooo_last_skb = NULL;
		WRITE_ONCE(tcp_sk(sk)->copied_seq, tcp_sk(sk)->rcv_nxt);
		release_sock(sk);
		if (sk->sk_prot && sk->sk_prot->diag_destroy)
			sk->sk_prot->diag_destroy(sk, ECONNABORTED);
		c->dropped++;
	} else {
		lock_sock(sk);
		collect_queue(c, &sk->sk_receive_queue);
		collect_rbtree(c, &tcp_sk(sk)->out_of_order_queue);
		collect_backlog(c, sk);
		release_sock(sk);
	}
	emit_line(c, "peer tcp %d %zx\n", holder, bytes);
}

/* The local port a queued UDP datagram came from, if it came from this machine (0 if not). */
static u16 udp_local_source(struct sock *sk, struct sk_buff *skb)
{
	if (!skb_transport_header_was_set(skb) || !skb_network_header(skb))
		return 0;
	if (skb->protocol == htons(ETH_P_IP)) {
		if (!is_local_v4(sk, ip_hdr(skb)->saddr))
			return 0;
#if IS_ENABLED(CONFIG_IPV6)
	} else if (skb->protocol == htons(ETH_P_IPV6)) {
		if (!ipv6_addr_loopback(&ipv6_hdr(skb)->saddr))
			return 0;
#endif
	} else {
		return 0;
	}
	return ntohs(udp_hdr(skb)->source);
}

/* Datagrams waiting in a UDP socket (its receive queue and the reader's queue), each sent
 * from a local port the ledger knows the senders of; dropped one by one at restore. */
static void visit_foreign_udp(struct collector *c, struct sock *sk, pid_t holder)
{
	struct sk_buff_head *queues[] = { &sk->sk_receive_queue, &udp_sk(sk)->reader_queue };
	struct sk_buff_head dropped;
	struct sk_buff *skb, *tmp;
	unsigned long flags;
	size_t bytes = 0, unknown = 0;
	int i;

	__skb_queue_head_init(&dropped);
	for (i = 0; i < ARRAY_SIZE(queues); i++) {
		spin_lock_irqsave(&queues[i]->lock, flags);
		skb_queue_walk_safe(queues[i], skb, tmp) {
			u16 port = udp_local_source(sk, skb);

			if (!port)
				continue;
			if (!ledger_attributes(c, LEDGER_UDP, NULL, 0, port)) {
				if (!ledger_knows_port(LEDGER_UDP, port) || ledger_lost_records())
					unknown += skb->len;
				continue;
			}
			bytes += skb->len;
			if (c->drain) {
				__skb_unlink(skb, queues[i]);
				__skb_queue_tail(&dropped, skb);
				c->dropped++;
			} else {
				collect_skb(c, skb, 0);
			}
		}
		spin_unlock_irqrestore(&queues[i]->lock, flags);
	}
	/* Released as a read would, outside the locks: UDP accounts its receive memory itself
	 * (udp_skb_destructor gives it back), then the skb is freed. */
	while ((skb = __skb_dequeue(&dropped)) != NULL) {
		udp_skb_destructor(sk, skb);
		skb_consume_udp(sk, skb, 0);
	}
	if (bytes)
		emit_line(c, "peer udp %d %zx\n", holder, bytes);
	if (unknown && !c->drain)
		emit_line(c, "unattributed udp %d %zx\n", holder, unknown);
}

void visit_foreign_sock(struct collector *c, struct sock *sk, pid_t holder)
{
	if (!first_sight(c, sk))
		return;
	if (sk->sk_family == AF_UNIX)
		visit_foreign_unix(c, sk, holder);
	else if (is_tcp(sk))
		visit_foreign_tcp(c, sk, holder);
	else if ((sk->sk_family == AF_INET || sk->sk_family == AF_INET6) && sk->sk_protocol == IPPROTO_UDP &&
		 sk->sk_type == SOCK_DGRAM)
		visit_foreign_udp(c, sk, holder);
}
