#define _GNU_SOURCE
#include "CSparcSupport.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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
