// SPDX-License-Identifier: GPL-2.0
/* Pipes and FIFOs: pages owned by pipe buffers (and vmspliced pages only the pipe holds), the spare page. */
#include "sparc_helper.h"

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

void visit_pipe(struct collector *c, struct pipe_inode_info *pipe)
{
	if (c->drain)
		drain_pipe(c, pipe);
	else
		collect_pipe(c, pipe);
}

/* Bytes waiting in a pipe. */
static size_t pipe_bytes(struct pipe_inode_info *pipe)
{
	size_t bytes = 0;
	unsigned int i;

	if (!pipe->bufs || !pipe->ring_size)
		return 0;
	pipe_lock(pipe);
	for (i = pipe->tail; i != pipe->head; i++)
		bytes += pipe->bufs[i & (pipe->ring_size - 1)].len;
	pipe_unlock(pipe);
	return bytes;
}

/* A pipe or FIFO another process holds: when an excluded process wrote into it, all its
 * queued data is theirs to leave out (a pipe does not say whose bytes are whose), and at
 * restore it is emptied, so its reader finds the end of the data, never zeros. */
void visit_foreign_pipe(struct collector *c, struct file *file, pid_t holder)
{
	struct pipe_inode_info *pipe = file->private_data;
	size_t bytes;

	if (!pipe)
		return;
	if (!ledger_attributes(c, LEDGER_PIPE, pipe, file_inode(file)->i_ino, 0))
		return;
	/* Its reader had what they wrote, read or not: a server they talked to. */
	if (!c->drain && (file->f_mode & FMODE_READ))
		emit_line(c, "talked pipe %d 0\n", holder);
	if (!first_sight(c, pipe))
		return;
	bytes = pipe_bytes(pipe);
	if (!bytes)
		return;
	if (c->drain)
		drain_pipe(c, pipe);
	else
		collect_pipe(c, pipe);
	emit_line(c, "peer pipe %d %zx\n", holder, bytes);
}
