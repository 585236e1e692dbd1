#ifndef SPARC_CSPARCGUEST_H
#define SPARC_CSPARCGUEST_H
/* Guest-side system calls that Swift does not see without _GNU_SOURCE / _XOPEN_SOURCE. */
#include <stddef.h>

/* Makes glibc zero freed heap memory (M_PERTURB with a zero low byte). */
int sparc_zero_freed_memory(void);
/* statfs(2) f_type of a path, or -1. */
long sparc_fs_type(const char *path);
/* A new pty master (O_RDWR | O_NOCTTY | O_CLOEXEC), granted and unlocked; -1 on error. */
int sparc_open_pty_master(void);
/* The slave's path for a pty master, into buf; 0 on success. */
int sparc_pty_slave_name(int master, char *buf, size_t len);
#endif
