#define _GNU_SOURCE
#include "CSparcGuest.h"
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <sys/vfs.h>

int sparc_zero_freed_memory(void) { return mallopt(M_PERTURB, 0x100); }

long sparc_fs_type(const char *path)
{
	struct statfs s;
	if (statfs(path, &s) != 0)
		return -1;
	return (long)s.f_type;
}

int sparc_open_pty_master(void)
{
	int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (grantpt(fd) != 0 || unlockpt(fd) != 0)
		return -1;
	return fd;
}

int sparc_pty_slave_name(int master, char *buf, size_t len) { return ptsname_r(master, buf, len); }
