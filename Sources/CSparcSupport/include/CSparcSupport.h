#ifndef SPARC_CSPARCSUPPORT_H
#define SPARC_CSPARCSUPPORT_H
/* System calls of the host and guest support code that Swift cannot express: the cmsg
 * macros of SCM_RIGHTS, fallocate's flags. */
#include <stddef.h>
#include <spawn.h>
#include <sys/types.h>

/* Sends `len` bytes of `buf` on a Unix socket with `nfds` descriptors attached
 * (SCM_RIGHTS), as QEMU's monitor expects for getfd and add-fd. Returns the bytes sent
 * or -1 with errno set. */
ssize_t sparc_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);

/* Makes a spawned child close every descriptor from `lowfd` up (glibc's
 * posix_spawn_file_actions_addclosefrom_np), so it inherits only what it was given. */
int sparc_spawn_close_from(posix_spawn_file_actions_t *actions, int lowfd);

/* pipe2(fds, O_CLOEXEC): both ends close-on-exec from the start, so a child spawned by
 * another thread in between never inherits them. Returns 0 or -1 with errno set. */
int sparc_pipe_cloexec(int fds[2]);

/* Turns `len` bytes at `offset` into a hole (reads give zeros, the size stays); a file
 * another process maps shared sees the zeros too. Returns 0 or -1 with errno set. */
int sparc_punch_hole(int fd, off_t offset, off_t len);
/* rename(2) that fails with EEXIST instead of replacing what is at `to`
 * (renameat2 with RENAME_NOREPLACE). Returns 0 or -1 with errno set. */
int sparc_rename_noreplace(const char *from, const char *to);

/* The file system type (statfs f_type, e.g. TMPFS_MAGIC) of the one holding `path`, or -1
 * with errno set. */
long sparc_filesystem_type(const char *path);
/// syncfs(2): flushes the whole file system holding `fd` (glibc declares it under _GNU_SOURCE only).
int sparc_syncfs(int fd);

/* Makes the file `copy` read as the file `source` (both `length` bytes, on tmpfs) and returns
 * how many 4 KiB pages it had to write again or clear, or -1 with errno set. Reads with pread,
 * one thread per core (up to 4), skipping 4 MiB chunks that are holes in both (SEEK_DATA), so
 * neither file's holes get memory (a shared mapping's read fault would allocate every hole of
 * a tmpfs file). */
long long sparc_repair_copy(int copy, int source, off_t length);

#endif
