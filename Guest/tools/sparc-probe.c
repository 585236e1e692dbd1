/*
 * sparc-probe: small guest programs for sparc's end-to-end tests and benchmarks, which
 * busybox cannot play: socket receivers that accept but never read, senders, and a
 * process that holds a given amount of memory.
 *
 *   sparc-probe recv-unix PATH    listen on a unix stream socket, accept, never read
 *   sparc-probe send-unix PATH    connect, send standard input, wait for the peer to close
 *   sparc-probe recv-tcp PORT     the same on 127.0.0.1:PORT
 *   sparc-probe send-tcp PORT
 *   sparc-probe hold MIB          allocate MIB MiB, fill it from /dev/urandom, sleep
 *   sparc-probe spray MIB         write standard input at the start of every page of MIB MiB
 *                                 it allocates, print "sprayed PAGES", and exit: what it
 *                                 leaves is in free memory only
 *   sparc-probe threads N         start N threads that sleep, and sleep
 *   sparc-probe named NAME        take NAME as its process name (prctl PR_SET_NAME), sleep
 *   sparc-probe memfd             write standard input into a memfd with write(2) (never
 *                                 mapped), keep it open, sleep
 *   sparc-probe many-fds N        hold N descriptors, then a pipe past them (fd > N) with
 *                                 standard input written into it, unread; sleep
 *   sparc-probe vmsplice          copy standard input into a page of its own, vmsplice it
 *                                 into a pipe it holds (unread), unmap the page, sleep
 *   sparc-probe sysv              copy standard input into a new SysV shared memory
 *                                 segment, detach it (the segment stays), print its id, sleep
 *   sparc-probe dgram-recv PATH OUT  bind a unix datagram socket at PATH and read nothing
 *                                 until SIGUSR1; then write what is queued into OUT, exit
 *   sparc-probe dgram-send PATH   send standard input to PATH as one datagram from an
 *                                 unconnected socket it keeps, sleep
 *   sparc-probe reserve GIB       map GIB GiB (no reserve), copy standard input into its last
 *                                 page (the only one touched), name itself "ready", sleep
 *   sparc-probe chatter PORT      send standard input back and forth without pause over a TCP
 *                                 connection on 127.0.0.1:PORT and a unix socket pair, between
 *                                 itself and a child that echoes (both ends its own)
 *   sparc-probe recv-late KIND WHERE OUT  a receiver that reads nothing until SIGUSR1 (KIND unix
 *                                 or tcp: listen and accept; udp: bind 127.0.0.1:WHERE; unixdgram:
 *                                 bind the path; fifo: hold
 *                                 the FIFO open for reading); writes OUT.ready once set up; on
 *                                 SIGUSR1 reads what waits, without blocking, into OUT, then a
 *                                 line "END eof|again|reset|error", and exits
 *   sparc-probe send-close KIND WHERE [exit]  send standard input (unix or tcp: connect; udp:
 *                                 to 127.0.0.1:WHERE; fifo: open for writing), close, then sleep
 *                                 (or exit)
 *   sparc-probe key               add standard input as a "user" key to its process keyring, sleep
 *   sparc-probe assemble KIND SEED  build a fake credential (aws, ssh, canary) in its heap from
 *                                 scrambled pieces, so it is whole nowhere else; print "ready", sleep
 *   sparc-probe helper-stress T N [R]  T threads share one /proc/sparc_helper descriptor and
 *                                 each asks N times for the parent shell (its pid R times
 *                                 per request); the output must be whole lines within the
 *                                 helper's buffer ("ok LINES [overflow]" or "bad: …")
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/shm.h>
#include <sys/uio.h>
#include <poll.h>
#include <sys/wait.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int addr_of(const char *kind, const char *where, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (!strcmp(kind, "unix")) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		un->sun_family = AF_UNIX;
		strncpy(un->sun_path, where, sizeof(un->sun_path) - 1);
		*len = sizeof(*un);
		return AF_UNIX;
	}
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	in->sin_family = AF_INET;
	in->sin_port = htons(atoi(where));
	in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*len = sizeof(*in);
	return AF_INET;
}

static int receive(const char *kind, const char *where)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family = addr_of(kind, where, &ss, &len), one = 1;
	int s = socket(family, SOCK_STREAM, 0);

	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_UNIX)
		unlink(where);
	if (bind(s, (struct sockaddr *)&ss, len) || listen(s, 4)) {
		perror("sparc-probe: listen");
		return 1;
	}
	int c = accept(s, NULL, NULL);
	if (c < 0)
		return 1;
	for (;;)
		pause(); /* hold the connection, never read it */
}

static int send_stdin(const char *kind, const char *where)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int family = addr_of(kind, where, &ss, &len), s = -1, i;
	char buf[4096];
	ssize_t n;

	for (i = 0; i < 100; i++) {
		s = socket(family, SOCK_STREAM, 0);
		if (connect(s, (struct sockaddr *)&ss, len) == 0)
			break;
		close(s);
		s = -1;
		usleep(100000);
	}
	if (s < 0) {
		perror("sparc-probe: connect");
		return 1;
	}
	while ((n = read(0, buf, sizeof(buf))) > 0)
		if (write(s, buf, n) != n)
			return 1;
	memset(buf, 0, sizeof(buf));
	shutdown(s, SHUT_WR);
	return 0;
}

static int hold(long mib)
{
	size_t size = (size_t)mib << 20, done = 0;
	char *p = malloc(size);
	int fd = open("/dev/urandom", O_RDONLY);

	if (!p || fd < 0)
		return 1;
	while (done < size) {
		ssize_t n = read(fd, p + done, size - done > (1 << 20) ? (1 << 20) : size - done);
		if (n <= 0)
			return 1;
		done += n;
	}
	close(fd);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static int threads(int n)
{
	for (int i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleeper, NULL)) {
			perror("sparc-probe: pthread_create");
			return 1;
		}
	}
	for (;;)
		pause();
}

static int memfd(void)
{
	char buf[4096];
	int fd = memfd_create("sparc-probe", MFD_CLOEXEC);
	if (fd < 0) {
		perror("memfd_create");
		return 1;
	}
	ssize_t n;
	while ((n = read(0, buf, sizeof buf)) > 0)
		if (write(fd, buf, n) != n)
			return 1;
	memset(buf, 0, sizeof buf);
	for (;;)
		pause();
}

/* Reads standard input (up to one page) into buf; returns its length. */
static size_t read_input(char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t n;
	while (len < cap && (n = read(0, buf + len, cap - len)) > 0)
		len += n;
	return len;
}

static int spray(long mib)
{
	char secret[256];
	size_t n = read_input(secret, sizeof(secret)), size = (size_t)mib << 20, off;
	char *p = malloc(size);

	if (!p || !n)
		return 1;
	for (off = 0; off + n <= size; off += 4096)
		memcpy(p + off, secret, n);
	printf("sprayed %zu\n", size / 4096);
	fflush(stdout);
	return 0;
}

static int many_fds(int count)
{
	struct rlimit rl = { count + 64, count + 64 };
	char buf[4096];
	int p[2];
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		perror("setrlimit");
		return 1;
	}
	for (int i = 0; i < count; i++)
		if (open("/dev/null", O_RDONLY) < 0) {
			perror("open");
			return 1;
		}
	if (pipe(p) != 0)
		return 1;
	size_t len = read_input(buf, sizeof buf);
	if (write(p[1], buf, len) != (ssize_t)len)
		return 1;
	memset(buf, 0, sizeof buf);
	printf("%d %d\n", p[0], p[1]);
	fflush(stdout);
	for (;;)
		pause();
}

static int splice_page(void)
{
	long page = sysconf(_SC_PAGESIZE);
	char *buf = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int p[2];
	if (buf == MAP_FAILED || pipe(p) != 0)
		return 1;
	size_t len = read_input(buf, page);
	struct iovec iov = { buf, len };
	if (vmsplice(p[1], &iov, 1, 0) != (ssize_t)len) {
		perror("vmsplice");
		return 1;
	}
	/* Only the pipe holds the page now. */
	munmap(buf, page);
	for (;;)
		pause();
}

static int sysv(void)
{
	char buf[4096];
	size_t len = read_input(buf, sizeof buf);
	int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
	if (id < 0) {
		perror("shmget");
		return 1;
	}
	char *seg = shmat(id, NULL, 0);
	if (seg == (void *)-1)
		return 1;
	memcpy(seg, buf, len);
	memset(buf, 0, sizeof buf);
	shmdt(seg);
	printf("%d\n", id);
	fflush(stdout);
	for (;;)
		pause();
}

/* Echoes whatever arrives on either descriptor back on it, forever. */
static void echo_forever(int a, int b)
{
	char buf[8192];
	struct pollfd fds[2] = { { a, POLLIN, 0 }, { b, POLLIN, 0 } };
	for (;;) {
		if (poll(fds, 2, -1) < 0)
			continue;
		for (int k = 0; k < 2; k++)
			if (fds[k].revents & POLLIN) {
				ssize_t n = read(fds[k].fd, buf, sizeof buf);
				if (n <= 0)
					_exit(0);
				if (write(fds[k].fd, buf, n) != n)
					_exit(1);
			}
	}
}

static int chatter(int port)
{
	char secret[4096], buf[8192];
	size_t len = read_input(secret, sizeof secret);
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0), a = socket(AF_INET, SOCK_STREAM, 0), pair[2];
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (l < 0 || bind(l, (struct sockaddr *)&in, sizeof in) != 0 || listen(l, 1) != 0 ||
	    connect(a, (struct sockaddr *)&in, sizeof in) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) {
		perror("chatter");
		return 1;
	}
	int b = accept(l, NULL, NULL);
	close(l);
	if (fork() == 0) {
		close(a);
		close(pair[0]);
		echo_forever(b, pair[1]);
	}
	close(b);
	close(pair[1]);
	for (;;) {
		if (write(a, secret, len) != (ssize_t)len || write(pair[0], secret, len) != (ssize_t)len)
			return 1;
		/* Read the echoes back: traffic both ways, never more than a little in flight. */
		for (size_t got = 0; got < len;) {
			ssize_t n = read(a, buf, len - got);
			if (n <= 0)
				return 1;
			got += n;
		}
		for (size_t got = 0; got < len;) {
			ssize_t n = read(pair[0], buf, len - got);
			if (n <= 0)
				return 1;
			got += n;
		}
		usleep(2000);
	}
}

static int reserve(long gib)
{
	size_t size = (size_t)gib << 30;
	char *space = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (space == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	/* One page touched, at the far end: the whole range has to be looked at to find it. */
	read_input(space + size - 4096, 4096);
	prctl(PR_SET_NAME, "ready", 0, 0, 0);
	for (;;)
		pause();
}

static int add_key_from_input(void)
{
	char buf[4096];
	size_t len = read_input(buf, sizeof buf);
	/* KEY_SPEC_PROCESS_KEYRING: the key dies with the process. */
	if (syscall(SYS_add_key, "user", "sparc-probe", buf, len, -2) < 0) {
		perror("add_key");
		return 1;
	}
	memset(buf, 0, sizeof buf);
	for (;;)
		pause();
}

static volatile sig_atomic_t got_usr1;
static void on_usr1(int sig)
{
	(void)sig;
	got_usr1 = 1;
}

static int dgram_recv(const char *path, const char *out)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	strncpy(un.sun_path, path, sizeof(un.sun_path) - 1);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&un, sizeof un) != 0) {
		perror("bind");
		return 1;
	}
	signal(SIGUSR1, on_usr1);
	while (!got_usr1)
		pause();
	int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char buf[65536];
	ssize_t n;
	while ((n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
		if (write(o, buf, n) != n)
			return 1;
	close(o);
	return 0;
}

static int dgram_send(const char *path)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	char buf[4096];
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	strncpy(un.sun_path, path, sizeof(un.sun_path) - 1);
	size_t len = read_input(buf, sizeof buf);
	if (fd < 0 || sendto(fd, buf, len, 0, (struct sockaddr *)&un, sizeof un) != (ssize_t)len) {
		perror("sendto");
		return 1;
	}
	memset(buf, 0, sizeof buf);
	for (;;)
		pause();
}

static int open_receiver(const char *kind, const char *where)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, s;

	if (!strcmp(kind, "fifo"))
		return open(where, O_RDONLY | O_NONBLOCK);
	if (!strcmp(kind, "unixdgram")) {
		addr_of("unix", where, &ss, &len);
		unlink(where);
		s = socket(AF_UNIX, SOCK_DGRAM, 0);
		return s >= 0 && bind(s, (struct sockaddr *)&ss, len) == 0 ? s : -1;
	}
	if (!strcmp(kind, "udp")) {
		addr_of("tcp", where, &ss, &len);
		s = socket(AF_INET, SOCK_DGRAM, 0);
		return s >= 0 && bind(s, (struct sockaddr *)&ss, len) == 0 ? s : -1;
	}
	s = socket(addr_of(kind, where, &ss, &len), SOCK_STREAM, 0);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (!strcmp(kind, "unix"))
		unlink(where);
	if (s < 0 || bind(s, (struct sockaddr *)&ss, len) || listen(s, 4))
		return -1;
	/* Ready before accept: the sender may connect now. */
	return s;
}

static int recv_late(const char *kind, const char *where, const char *out)
{
	char ready[4096], buf[65536];
	int fd = open_receiver(kind, where), o;
	const char *end = "again";
	ssize_t n;

	if (fd < 0) {
		perror("sparc-probe: receiver");
		return 1;
	}
	signal(SIGUSR1, on_usr1);
	snprintf(ready, sizeof(ready), "%s.ready", out);
	close(open(ready, O_WRONLY | O_CREAT | O_TRUNC, 0600));
	if (!strcmp(kind, "unix") || !strcmp(kind, "tcp")) {
		int c = accept(fd, NULL, NULL);

		if (c < 0)
			return 1;
		fd = c;
	}
	while (!got_usr1)
		pause();
	o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	for (;;) {
		n = !strcmp(kind, "fifo") ? read(fd, buf, sizeof(buf)) : recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			if (write(o, buf, n) != n)
				return 1;
			continue;
		}
		end = n == 0 ? "eof" : errno == EAGAIN ? "again" : (errno == ECONNRESET || errno == ECONNABORTED) ? "reset" : "error";
		break;
	}
	dprintf(o, "\nEND %s\n", end);
	close(o);
	return 0;
}

static int send_close(const char *kind, const char *where, int then_exit)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char buf[4096];
	size_t n = read_input(buf, sizeof(buf));
	int fd = -1, i;

	if (!strcmp(kind, "fifo")) {
		fd = open(where, O_WRONLY);
		if (fd < 0 || write(fd, buf, n) != (ssize_t)n)
			return 1;
	} else if (!strcmp(kind, "udp") || !strcmp(kind, "unixdgram")) {
		int unix_dgram = !strcmp(kind, "unixdgram");

		addr_of(unix_dgram ? "unix" : "tcp", where, &ss, &len);
		fd = socket(unix_dgram ? AF_UNIX : AF_INET, SOCK_DGRAM, 0);
		if (fd < 0 || sendto(fd, buf, n, 0, (struct sockaddr *)&ss, len) != (ssize_t)n)
			return 1;
	} else {
		int family = addr_of(kind, where, &ss, &len);

		for (i = 0; i < 100; i++) {
			fd = socket(family, SOCK_STREAM, 0);
			if (connect(fd, (struct sockaddr *)&ss, len) == 0)
				break;
			close(fd);
			fd = -1;
			usleep(100000);
		}
		if (fd < 0 || write(fd, buf, n) != (ssize_t)n)
			return 1;
	}
	close(fd);
	memset(buf, 0, sizeof(buf));
	printf("sent\n");
	fflush(stdout);
	if (then_exit)
		return 0;
	for (;;)
		pause();
}

static int helper_fd;
static int helper_rounds;
static int helper_repeat = 1;

static char helper_request[65536];

/* Asks for the parent shell, its pid repeated in one request (so the shared output
 * buffer fills up quickly and its end is raced for). */
static void *helper_asker(void *arg)
{
	const char *req = helper_request;
	size_t n = strlen(req);
	(void)arg;
	for (int i = 0; i < helper_rounds; i++)
		/* pwrite: write() on a shared descriptor is serialised by the file position lock. */
		if (pwrite(helper_fd, req, n, 0) != (ssize_t)n)
			return (void *)1;
	return NULL;
}

/* The helper's answer must hold whole lines only: no NUL bytes (a lost length update
 * leaves a hole), nothing past the 8 MiB buffer, "overflow" only as the last line. */
static int helper_stress(int threads, int rounds)
{
	pthread_t t[64];
	if (threads < 1 || threads > 64)
		return 2;
	helper_fd = open("/proc/sparc_helper", O_RDWR);
	if (helper_fd < 0) {
		perror("/proc/sparc_helper");
		return 1;
	}
	helper_rounds = rounds;
	int r = snprintf(helper_request, sizeof helper_request, "pids");
	for (int i = 0; i < helper_repeat && r < (int)sizeof helper_request - 16; i++)
		r += snprintf(helper_request + r, sizeof helper_request - r, " %d", (int)getppid());
	snprintf(helper_request + r, sizeof helper_request - r, "\n");
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, helper_asker, NULL);
	for (int i = 0; i < threads; i++) {
		void *r;
		pthread_join(t[i], &r);
		if (r) {
			perror("write");
			return 1;
		}
	}
	size_t cap = 64 << 20, len = 0;
	char *out = malloc(cap);
	ssize_t n;
	lseek(helper_fd, 0, SEEK_SET);
	while ((n = read(helper_fd, out + len, cap - len - 1)) > 0)
		len += n;
	out[len] = 0;
	if (len > (8 << 20)) {
		printf("bad: %zu bytes, past the 8 MiB buffer\n", len);
		return 1;
	}
	if (strlen(out) != len) {
		printf("bad: NUL byte at %zu of %zu\n", strlen(out), len);
		return 1;
	}
	long lines = 0;
	int overflowed = 0;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		char kind[16];
		int pid;
		unsigned long long phys, size;
		char extra, what[16];
		/* Lines that name a queue or the ledger: four fields, the second a word or hex. */
		if (!overflowed && sscanf(line, "%15s %15s %llx %llx %c", kind, what, &phys, &size, &extra) == 4 &&
		    (!strcmp(kind, "ledger") || !strcmp(kind, "peer") || !strcmp(kind, "talked") || !strcmp(kind, "unattributed"))) {
			lines++;
			continue;
		}
		if (overflowed || sscanf(line, "%15s %d %llx %llx %c", kind, &pid, &phys, &size, &extra) != 4) {
			printf("bad: %.80s\n", line);
			return 1;
		}
		overflowed = !strcmp(kind, "overflow");
		lines++;
	}
	printf("ok %ld%s\n", lines, overflowed ? " overflow" : "");
	return 0;
}

static int named(const char *name)
{
	if (prctl(PR_SET_NAME, name, 0, 0, 0) != 0) {
		perror("prctl");
		return 1;
	}
	for (;;)
		pause();
}

/*
 * assemble KIND SEED: builds a fake credential of KIND (aws, ssh, canary) in its heap from
 * pieces stored scrambled, so the whole secret exists nowhere else (not in this program's
 * file, not in a pipe, not on a terminal); the SEED varies it. Prints "ready", sleeps.
 */
static const unsigned char scrambled_aws[] = {0x1b, 0x11, 0x13, 0x1b};
static const unsigned char scrambled_begin[] = {0x77, 0x77, 0x77, 0x77, 0x77, 0x18, 0x1f, 0x1d, 0x13, 0x14, 0x7a, 0x15, 0x0a, 0x1f, 0x14, 0x09, 0x09, 0x12, 0x7a, 0x0a, 0x08, 0x13, 0x0c, 0x1b, 0x0e, 0x1f, 0x7a, 0x11, 0x1f, 0x03, 0x77, 0x77, 0x77, 0x77, 0x77};
static const unsigned char scrambled_end[] = {0x77, 0x77, 0x77, 0x77, 0x77, 0x1f, 0x14, 0x1e, 0x7a, 0x15, 0x0a, 0x1f, 0x14, 0x09, 0x09, 0x12, 0x7a, 0x0a, 0x08, 0x13, 0x0c, 0x1b, 0x0e, 0x1f, 0x7a, 0x11, 0x1f, 0x03, 0x77, 0x77, 0x77, 0x77, 0x77};
static const unsigned char scrambled_canary[] = {0x09, 0x0a, 0x1b, 0x08, 0x19, 0x77, 0x19, 0x1b, 0x14, 0x1b, 0x08, 0x03, 0x77};

static char *unscramble(char *out, const unsigned char *in, size_t n)
{
	volatile unsigned char key = 0x5A; /* volatile: the compiler must not unscramble it at build time */
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(in[i] ^ key);
	return out + n;
}

static int assemble(const char *kind, const char *seed_text)
{
	unsigned long seed = strtoul(seed_text, NULL, 10) * 2654435761UL + 12345;
	char *secret = calloc(1, 4096);
	char *p = secret;
	if (!secret)
		return 1;
	if (!strcmp(kind, "aws")) {
		const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
		p = unscramble(p, scrambled_aws, sizeof scrambled_aws);
		for (int i = 0; i < 16; i++) {
			seed = seed * 6364136223846793005UL + 1442695040888963407UL;
			*p++ = alphabet[(seed >> 33) % 32];
		}
	} else if (!strcmp(kind, "ssh")) {
		const char *b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		p = unscramble(p, scrambled_begin, sizeof scrambled_begin);
		for (int line = 0; line < 6; line++) {
			*p++ = '\n';
			for (int i = 0; i < 70; i++) {
				seed = seed * 6364136223846793005UL + 1442695040888963407UL;
				*p++ = b64[(seed >> 33) % 64];
			}
		}
		*p++ = '\n';
		p = unscramble(p, scrambled_end, sizeof scrambled_end);
		*p++ = '\n';
	} else if (!strcmp(kind, "canary")) {
		p = unscramble(p, scrambled_canary, sizeof scrambled_canary);
		p += sprintf(p, "%08lu", seed % 100000000UL);
	} else {
		fprintf(stderr, "sparc-probe: assemble aws|ssh|canary SEED\n");
		return 2;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "helper-stress")) {
		if (argc == 5)
			helper_repeat = atoi(argv[4]);
		return helper_stress(atoi(argv[2]), atoi(argv[3]));
	}
	if (argc == 3 && !strcmp(argv[1], "many-fds"))
		return many_fds(atoi(argv[2]));
	if (argc == 2 && !strcmp(argv[1], "vmsplice"))
		return splice_page();
	if (argc == 3 && !strcmp(argv[1], "chatter"))
		return chatter(atoi(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "reserve"))
		return reserve(atol(argv[2]));
	if (argc == 2 && !strcmp(argv[1], "key"))
		return add_key_from_input();
	if (argc == 4 && !strcmp(argv[1], "assemble"))
		return assemble(argv[2], argv[3]);
	if (argc == 2 && !strcmp(argv[1], "sysv"))
		return sysv();
	if (argc == 4 && !strcmp(argv[1], "dgram-recv"))
		return dgram_recv(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "dgram-send"))
		return dgram_send(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "memfd"))
		return memfd();
	if (argc == 3 && !strcmp(argv[1], "named"))
		return named(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "recv-unix"))
		return receive("unix", argv[2]);
	if (argc == 3 && !strcmp(argv[1], "send-unix"))
		return send_stdin("unix", argv[2]);
	if (argc == 3 && !strcmp(argv[1], "recv-tcp"))
		return receive("tcp", argv[2]);
	if (argc == 3 && !strcmp(argv[1], "send-tcp"))
		return send_stdin("tcp", argv[2]);
	if (argc == 3 && !strcmp(argv[1], "threads"))
		return threads(atoi(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "hold"))
		return hold(atol(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "spray"))
		return spray(atol(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "recv-late"))
		return recv_late(argv[2], argv[3], argv[4]);
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "send-close"))
		return send_close(argv[2], argv[3], argc == 5 && !strcmp(argv[4], "exit"));
	fprintf(stderr, "usage: sparc-probe recv-unix|send-unix PATH | recv-tcp|send-tcp PORT | hold MIB | spray MIB | recv-late KIND WHERE OUT | send-close KIND WHERE [exit] | threads N | named NAME | memfd | many-fds N | vmsplice | sysv | key | reserve GIB | chatter PORT | dgram-recv PATH OUT | dgram-send PATH | assemble aws|ssh|canary SEED | helper-stress THREADS ROUNDS [PIDS-PER-REQUEST]\n");
	return 2;
}
