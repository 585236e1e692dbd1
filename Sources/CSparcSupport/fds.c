#define _GNU_SOURCE
#include "CSparcSupport.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <unistd.h>
#include <string.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/vfs.h>

ssize_t sparc_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	char control[CMSG_SPACE(sizeof(int) * 16)];

	if (nfds < 0 || nfds > 16) {
		errno = EINVAL;
		return -1;
	}
	if (nfds > 0) {
		memset(control, 0, sizeof(control));
		msg.msg_control = control;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	ssize_t n;
	do {
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	return n;
}

int sparc_spawn_close_from(posix_spawn_file_actions_t *actions, int lowfd)
{
	return posix_spawn_file_actions_addclosefrom_np(actions, lowfd);
}

int sparc_pipe_cloexec(int fds[2])
{
	return pipe2(fds, O_CLOEXEC);
}

int sparc_punch_hole(int fd, off_t offset, off_t len)
{
	return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
}

int sparc_rename_noreplace(const char *from, const char *to)
{
	return renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
}

long sparc_filesystem_type(const char *path)
{
	struct statfs fs;
	if (statfs(path, &fs) != 0)
		return -1;
	return (long)fs.f_type;
}

int sparc_syncfs(int fd)
{
	return syncfs(fd);
}

/* Whether `n` bytes at `p` are all zero. */
static int all_zero(const unsigned char *p, size_t n) {
    static const unsigned char zeros[4096];
    for (size_t i = 0; i < n; i += 4096) {
        size_t m = n - i < 4096 ? n - i : 4096;
        if (memcmp(p + i, zeros, m) != 0) return 0;
    }
    return 1;
}

/* pread of exactly `n` bytes (short only at the end of the file, the rest zeroed). */
static int read_full(int fd, unsigned char *buf, size_t n, off_t at) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, buf + done, n - done, at + (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) { memset(buf + done, 0, n - done); break; }
        done += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const unsigned char *buf, size_t n, off_t at) {
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(fd, buf + done, n - done, at + (off_t)done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        done += (size_t)w;
    }
    return 0;
}

#define REPAIR_CHUNK (4u << 20)

/* Whether the file has no data in [from, to) (a hole there, or its end). */
static int hole_throughout(int fd, off_t from, off_t to) {
    off_t data = lseek(fd, from, SEEK_DATA);
    return (data < 0 && errno == ENXIO) || data >= to;
}

/* The repair of [start, end) of the files: one thread's share. Fixed chunks, each read whole
 * unless both files are holes throughout it (reading a tmpfs hole gives zeros without
 * allocating; one extent at a time would cost a system call per scattered guest page). */
static long long repair_range(int copy, int source, off_t start, off_t end) {
    unsigned char *a = malloc(REPAIR_CHUNK), *b = malloc(REPAIR_CHUNK);
    long long repaired = 0;
    if (!a || !b) { free(a); free(b); errno = ENOMEM; return -1; }
    for (off_t p = start; p < end; p += REPAIR_CHUNK) {
        size_t n = (size_t)(end - p < REPAIR_CHUNK ? end - p : REPAIR_CHUNK);
        if (hole_throughout(source, p, p + (off_t)n) && hole_throughout(copy, p, p + (off_t)n)) continue;
        if (read_full(source, a, n, p) < 0 || read_full(copy, b, n, p) < 0) goto fail;
        for (size_t i = 0; i < n; i += 4096) {
            size_t m = n - i < 4096 ? n - i : 4096;
            if (memcmp(a + i, b + i, m) == 0) continue;
            /* Zeros in the RAM become a hole in the copy; data is written again. */
            if (all_zero(a + i, m) ? sparc_punch_hole(copy, p + (off_t)i, (off_t)m) < 0 : write_full(copy, a + i, m, p + (off_t)i) < 0) goto fail;
            repaired++;
        }
    }
    free(a);
    free(b);
    return repaired;
fail:
    free(a);
    free(b);
    return -1;
}

struct repair_share {
    int copy, source;
    off_t start, end;
    long long repaired;
    int error;
};

static void *repair_thread(void *arg) {
    struct repair_share *share = arg;
    share->repaired = repair_range(share->copy, share->source, share->start, share->end);
    share->error = share->repaired < 0 ? errno : 0;
    return NULL;
}

long long sparc_repair_copy(int copy, int source, off_t length) {
    /* The host's cores share the reading (it is memory-bound, and the guest waits for it). */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cores < 1 ? 1 : cores > 4 ? 4 : (int)cores;
    if (length < ((off_t)64 << 20)) n = 1;
    struct repair_share shares[4];
    pthread_t threads[4];
    off_t step = (length / n + ((off_t)2 << 20) - 1) & ~(((off_t)2 << 20) - 1);
    int started = 0;
    for (int i = 0; i < n; i++) {
        off_t from = step * i, to = i == n - 1 ? length : step * (i + 1);
        if (to > length) to = length;
        shares[i] = (struct repair_share){copy, source, from, to, 0, 0};
        if (i > 0 && pthread_create(&threads[i], NULL, repair_thread, &shares[i]) == 0) {
            started |= 1 << i;
            continue;
        }
        if (i > 0) repair_thread(&shares[i]);
    }
    repair_thread(&shares[0]);
    long long total = 0;
    int error = 0;
    for (int i = 0; i < n; i++) {
        if (started & (1 << i)) pthread_join(threads[i], NULL);
        if (shares[i].repaired < 0) error = shares[i].error;
        else total += shares[i].repaired;
    }
    if (error) { errno = error; return -1; }
    return total;
}
