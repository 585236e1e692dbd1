// SPDX-License-Identifier: GPL-2.0
/* Terminals: n_tty buffers, flip buffers, the write buffer, the 8250 transmit ring; both ends of a pty. */
#include "sparc_helper.h"

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

	if (ld && ld->ops && ld->ops->num == N_TTY && tty->disc_data) {
		long read_off = READ_ONCE(n_tty_read_buf_offset), echo_off = READ_ONCE(n_tty_echo_buf_offset);

		if (read_off >= 0 && echo_off >= 0) {
			emit_virt(c, "tty", (char *)tty->disc_data + read_off, n_tty_buf_size);
			emit_virt(c, "tty", (char *)tty->disc_data + echo_off, n_tty_buf_size);
		} else if (!c->blind_told) {
			/* Fail closed: the agent refuses rather than keep what was typed. */
			c->blind_told = true;
			emit_line(c, "blind tty 0 0\n");
		}
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

bool is_tty_major(unsigned int major)
{
	return major == TTY_MAJOR || major == TTYAUX_MAJOR ||
	       (major >= UNIX98_PTY_MASTER_MAJOR && major < UNIX98_PTY_SLAVE_MAJOR + UNIX98_PTY_MAJOR_COUNT);
}

/*
 * At restore, before the guest runs on, "drain P1 P2 ..." drops the unread data of the
 * excluded processes' pipes, sockets and terminals. Their pages were zeroed in the saved
 * image; a reader that is not excluded must not be handed those zeros. With the buffers
 * gone and the excluded writer killed right after, the reader sees end of data (pipes,
 * unix sockets), a reset (TCP) or no pending input (terminals), as if the writer had died
 * before writing.
 */

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

/* The kernel buffers behind a terminal: collected, or under "drain" dropped. */
void visit_tty(struct collector *c, struct tty_struct *tty)
{
	if (c->drain)
		drain_tty(c, tty);
	else
		collect_tty(c, tty);
}
