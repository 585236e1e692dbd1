#ifndef SPARC_CSPARCGUEST_H
#define SPARC_CSPARCGUEST_H
/* Guest-side system calls that Swift does not see without _GNU_SOURCE / _XOPEN_SOURCE. */
#include <stddef.h>

/* Makes glibc zero freed heap memory (M_PERTURB with a zero low byte). */
int sparc_zero_freed_memory(void);
int sparc_release_free_memory(void);

/* prctl(PR_SET_PDEATHSIG, sig): the kernel sends `sig` when the parent thread exits
 * (prctl is variadic, which Swift cannot call). */
int sparc_parent_death_signal(int sig);
/* statfs(2) f_type of a path, or -1. */
long sparc_fs_type(const char *path);
/* A new pty master (O_RDWR | O_NOCTTY | O_CLOEXEC), granted and unlocked; -1 on error. */
int sparc_open_pty_master(void);
/* The slave's path for a pty master, into buf; 0 on success. */
int sparc_pty_slave_name(int master, char *buf, size_t len);
/* Sets the first RTC (/dev/rtc0, kept in UTC) to `seconds` since the epoch; 0 or an errno. */
int sparc_set_rtc(long long seconds);
/* One extent of a file on its block device (FIEMAP): byte offsets and length. */
struct sparc_extent { unsigned long long logical, physical, length; unsigned int flags; };
/* Up to `max` extents of the open file `fd` into `out`; the count, or -errno. */
int sparc_file_extents(int fd, struct sparc_extent *out, int max);
/* Process events from the kernel's proc connector: a fork (pid forked by parent) or an
 * exit (pid), of processes only (threads are left out). */
struct sparc_proc_event { int kind; int pid; int parent; };
enum { SPARC_PROC_FORK = 1, SPARC_PROC_EXIT = 2, SPARC_PROC_LOST = 3 };
/* A netlink socket subscribed to the proc connector; the fd, or -errno. */
int sparc_proc_events_open(void);
/* Waits for the next batch of events; their count (0 for none of interest), or -errno.
 * A SPARC_PROC_LOST event says the kernel dropped events (the socket overflowed). */
int sparc_proc_events_next(int fd, struct sparc_proc_event *out, int max);
#endif
