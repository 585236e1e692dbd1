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
 * Then every other process's pipes and sockets are searched for data the excluded processes
 * wrote into them (peers.c, by the write ledger of ledger.c and the pid in unix skbs); such
 * a queue is collected and named: "peer KIND HOLDER BYTES" (KIND pipe, unix, tcp, udp), or
 * "unattributed KIND HOLDER BYTES" where its writer cannot be known. "pids P1 ... exited
 * E1 ..." also names descendants of theirs that have exited (their data counts too). The
 * answer ends with "ledger PROBES LOST SINCE": the probes active, the ledger records lost, and
 * when it began to record (boot-time ns).
 *
 * The processes must be frozen. The helper only reads pointers; it copies no data.
 * "drain P1 P2 ..." is the restore's counterpart: it drops those buffers (see draining)
 * and answers "dropped 0 0 COUNT". "layout SWAP_INFO NR_SWAPFILES" says where free memory
 * and swap are recorded, for the host to read at the pause (memory.c).
 * struct n_tty_data is private to n_tty.c: the agent reads its field offsets from BTF
 * and passes them as module parameters. They are writable by root (0600) so that an agent
 * finding the helper loaded without them (modprobe by hand) can set them; while unset, a
 * terminal's line-discipline buffers are reported as "blind" and the collection refuses.
 */
#include "sparc_helper.h"
#include <linux/hash.h>

long n_tty_read_buf_offset = -1;
module_param(n_tty_read_buf_offset, long, 0600);
MODULE_PARM_DESC(n_tty_read_buf_offset, "offset of read_buf in struct n_tty_data (from BTF)");
long n_tty_echo_buf_offset = -1;
module_param(n_tty_echo_buf_offset, long, 0600);
MODULE_PARM_DESC(n_tty_echo_buf_offset, "offset of echo_buf in struct n_tty_data (from BTF)");
long n_tty_buf_size = 4096;
module_param(n_tty_buf_size, long, 0444);
MODULE_PARM_DESC(n_tty_buf_size, "N_TTY_BUF_SIZE");

void emit_phys(struct collector *c, const char *kind, phys_addr_t phys, size_t len)
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
void emit_virt(struct collector *c, const char *kind, const void *addr, size_t len)
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

void emit_page(struct collector *c, const char *kind, struct page *pg, size_t off, size_t len)
{
	if (pg)
		emit_phys(c, kind, page_to_phys(pg) + off, len);
}

/* A line of another shape (the memory layout); like emit_phys it keeps 64 bytes free. */
void emit_line(struct collector *c, const char *fmt, ...)
{
	va_list args;
	int n;

	if (c->overflow)
		return;
	if (c->len + 128 > MAX_OUTPUT) {
		c->overflow = true;
		return;
	}
	va_start(args, fmt);
	n = vscnprintf(c->buf + c->len, MAX_OUTPUT - 64 - c->len, fmt, args);
	va_end(args);
	c->len += n;
}

/* ---- who is excluded ---- */

bool is_excluded_pid(struct collector *c, struct pid *pid)
{
	int i;

	for (i = 0; i < c->nlive; i++)
		if (c->live[i] == pid)
			return true;
	/* A process that has exited: its struct pid lives on (held by a queued skb or the
	 * ledger) without a task, and a later process given its number has another one. */
	if (pid_has_task(pid, PIDTYPE_TGID))
		return false;
	for (i = 0; i < c->nexited; i++)
		if (c->exited[i] == pid_nr(pid))
			return true;
	return false;
}

bool first_sight(struct collector *c, const void *queue)
{
	unsigned int h = hash_ptr(queue, ilog2(MAX_SEEN)), i;

	if (!c->seen)
		return true;
	for (i = 0; i < MAX_SEEN; i++) {
		const void **slot = &c->seen[(h + i) & (MAX_SEEN - 1)];

		if (*slot == queue)
			return false;
		if (!*slot) {
			*slot = queue;
			return true;
		}
	}
	/* Full: seen again rather than missed (a report may repeat). */
	return true;
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

void for_each_task_file(struct collector *c, struct task_struct *task, void (*fn)(struct collector *, struct file *, void *), void *arg)
{
	struct file_list *list = kvzalloc(sizeof(*list), GFP_KERNEL);
	int i, more;

	if (!list) {
		c->overflow = true;
		return;
	}
	do {
		list->count = 0;
		task_lock(task);
		more = task->files ? iterate_fd(task->files, list->next_fd, remember_file, list) : 0;
		task_unlock(task);
		for (i = 0; i < list->count; i++) {
			fn(c, list->files[i], arg);
			fput(list->files[i]);
		}
	} while (more);
	kvfree(list);
}

/* The kernel buffers behind one open file: collected, or under "drain" dropped. */
static void visit_file(struct collector *c, struct file *file, void *unused)
{
	struct inode *inode = file_inode(file);

	remember_sender(c, file);
	if (S_ISFIFO(inode->i_mode) && inode->i_pipe) {
		visit_pipe(c, inode->i_pipe);
	} else if (S_ISSOCK(inode->i_mode)) {
		struct socket *sock = sock_from_file(file);

		if (sock && sock->sk)
			visit_sock(c, sock->sk);
	} else if (S_ISCHR(inode->i_mode) && is_tty_major(imajor(inode))) {
		struct tty_file_private *priv = file->private_data;

		if (priv && priv->tty)
			visit_tty(c, priv->tty);
	}
}

static int collect_pid(struct collector *c, pid_t nr)
{
	struct pid *pid = find_get_pid(nr);
	struct task_struct *task;
	struct tty_struct *ctty = NULL;
	struct sighand_struct *sighand;
	unsigned long flags;

	if (!pid)
		return -ESRCH;
	task = get_pid_task(pid, PIDTYPE_PID);
	put_pid(pid);
	if (!task)
		return -ESRCH;
	c->pid = nr;
	for_each_task_file(c, task, visit_file, NULL);

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
	int rc = 0, i;

	if (count > 65536)
		return -E2BIG;
	text = memdup_user_nul(ubuf, count);
	if (IS_ERR(text))
		return PTR_ERR(text);
	p = text;
	tok = strsep(&p, " \n");
	if (tok && !strcmp(tok, "layout")) {
		unsigned long swap_info = 0, nr_swapfiles = 0;

		if (sscanf(p ? p : "", "%lx %lx", &swap_info, &nr_swapfiles) != 2) {
			kfree(text);
			return -EINVAL;
		}
		mutex_lock(&s->lock);
		rc = describe_memory(&s->c, swap_info, nr_swapfiles);
		mutex_unlock(&s->lock);
		kfree(text);
		return rc ? rc : count;
	}
	if (!tok || (strcmp(tok, "pids") && strcmp(tok, "drain"))) {
		kfree(text);
		return -EINVAL;
	}
	mutex_lock(&s->lock);
	s->c.drain = !strcmp(tok, "drain");
	s->c.nsenders = 0;
	s->c.nlive = 0;
	s->c.nexited = 0;
	s->c.senders = kvcalloc(MAX_SENDERS, sizeof(*s->c.senders), GFP_KERNEL);
	s->c.live = kvcalloc(MAX_SENDERS, sizeof(*s->c.live), GFP_KERNEL);
	s->c.exited = kvcalloc(MAX_EXITED, sizeof(*s->c.exited), GFP_KERNEL);
	s->c.seen = kvcalloc(MAX_SEEN, sizeof(*s->c.seen), GFP_KERNEL);
	s->c.peers = kvcalloc(MAX_SENDERS, sizeof(*s->c.peers), GFP_KERNEL);
	s->c.npeers = 0;
	if (!s->c.senders || !s->c.live || !s->c.exited || !s->c.seen || !s->c.peers) {
		rc = -ENOMEM;
		goto out;
	}
	/* "pids A B C exited D E": the excluded processes, then their descendants that have exited. */
	while ((tok = strsep(&p, " \n")) != NULL) {
		int nr;

		if (!*tok)
			continue;
		if (!strcmp(tok, "exited")) {
			while ((tok = strsep(&p, " \n")) != NULL) {
				if (!*tok)
					continue;
				if (kstrtoint(tok, 10, &nr) || nr <= 0 || s->c.nexited == MAX_EXITED) {
					rc = -EINVAL;
					goto out;
				}
				s->c.exited[s->c.nexited++] = nr;
			}
			break;
		}
		if (kstrtoint(tok, 10, &nr) || nr <= 0 || s->c.nlive == MAX_SENDERS) {
			rc = -EINVAL;
			goto out;
		}
		s->c.live[s->c.nlive] = find_get_pid(nr);
		if (s->c.live[s->c.nlive])
			s->c.nlive++;
	}
	for (i = 0; i < s->c.nlive; i++) {
		rc = collect_pid(&s->c, pid_nr(s->c.live[i]));
		if (rc == -ESRCH) {
			emit_line(&s->c, "gone %d 0 0\n", pid_nr(s->c.live[i]));
			rc = 0;
		} else if (rc) {
			goto out;
		}
	}
	scan_system(&s->c);
	emit_line(&s->c, "ledger %x %lx %llx\n", ledger_active_probes(), ledger_lost_records(), ledger_since());
out:
	for (i = 0; i < s->c.nlive; i++)
		put_pid(s->c.live[i]);
	kvfree(s->c.live);
	kvfree(s->c.exited);
	kvfree(s->c.seen);
	kvfree(s->c.peers);
	s->c.peers = NULL;
	s->c.live = NULL;
	s->c.exited = NULL;
	s->c.seen = NULL;
	s->c.nlive = 0;
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
	int rc = ledger_start();

	if (rc)
		return rc;
	entry = proc_create("sparc_helper", 0600, NULL, &helper_ops);
	if (!entry) {
		ledger_stop();
		return -ENOMEM;
	}
	return 0;
}

static void __exit helper_exit(void)
{
	proc_remove(entry);
	ledger_stop();
}

module_init(helper_init);
module_exit(helper_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("sparc: physical ranges of kernel buffers holding a process's data");
