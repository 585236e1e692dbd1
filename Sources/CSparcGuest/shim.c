#define _GNU_SOURCE
#include "CSparcGuest.h"
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <sys/vfs.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

int sparc_zero_freed_memory(void)
{
	/* One arena: requests run on threads of their own, and per-thread arenas kept what a
	 * checkpoint's collection freed (9 MiB of a 256 MiB guest) where malloc_trim cannot reach. */
	int arena = mallopt(M_ARENA_MAX, 1);
	return mallopt(M_PERTURB, 0x100) && arena;
}

/* Gives the heap's free pages back to the kernel (a checkpoint's collection leaves megabytes
 * the guest could use). */
int sparc_release_free_memory(void) { return malloc_trim(0); }

#include <sys/prctl.h>
int sparc_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0UL, 0UL, 0UL); }

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

#include <linux/rtc.h>
#include <sys/ioctl.h>
#include <time.h>

int sparc_set_rtc(long long seconds) {
    time_t t = (time_t)seconds;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) return EINVAL;
    struct rtc_time rtc = {
        .tm_sec = tm.tm_sec, .tm_min = tm.tm_min, .tm_hour = tm.tm_hour, .tm_mday = tm.tm_mday,
        .tm_mon = tm.tm_mon, .tm_year = tm.tm_year, .tm_wday = tm.tm_wday, .tm_yday = tm.tm_yday, .tm_isdst = 0,
    };
    int fd = open("/dev/rtc0", O_WRONLY | O_CLOEXEC);
    if (fd < 0) fd = open("/dev/rtc", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    int rc = ioctl(fd, RTC_SET_TIME, &rtc) < 0 ? errno : 0;
    close(fd);
    return rc;
}

#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdlib.h>

int sparc_file_extents(int fd, struct sparc_extent *out, int max) {
    int count = 0;
    unsigned long long start = 0;
    const int batch = 256;
    struct fiemap *fm = calloc(1, sizeof(*fm) + batch * sizeof(struct fiemap_extent));
    if (!fm) return -ENOMEM;
    for (;;) {
        memset(fm, 0, sizeof(*fm));
        fm->fm_start = start;
        fm->fm_length = ~0ULL - start;
        fm->fm_flags = FIEMAP_FLAG_SYNC;
        fm->fm_extent_count = batch;
        if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0) {
            int e = errno;
            free(fm);
            return -e;
        }
        if (fm->fm_mapped_extents == 0) break;
        int last = 0;
        for (unsigned i = 0; i < fm->fm_mapped_extents; i++) {
            struct fiemap_extent *x = &fm->fm_extents[i];
            if (count == max) { free(fm); return -E2BIG; }
            out[count].logical = x->fe_logical;
            out[count].physical = x->fe_physical;
            out[count].length = x->fe_length;
            out[count].flags = x->fe_flags;
            count++;
            start = x->fe_logical + x->fe_length;
            if (x->fe_flags & FIEMAP_EXTENT_LAST) last = 1;
        }
        if (last) break;
    }
    free(fm);
    return count;
}

#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <sys/socket.h>

int sparc_proc_events_open(void)
{
	int fd = socket(PF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
	struct sockaddr_nl addr = { .nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC, .nl_pid = 0 };
	int size = 4 << 20;
	char msg[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(enum proc_cn_mcast_op))] __attribute__((aligned(NLMSG_ALIGNTO)));
	struct nlmsghdr *nl = (struct nlmsghdr *)msg;
	struct cn_msg *cn = NLMSG_DATA(nl);
	enum proc_cn_mcast_op op = PROC_CN_MCAST_LISTEN;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
	if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
		goto fail;
	memset(msg, 0, sizeof msg);
	nl->nlmsg_len = NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof op);
	nl->nlmsg_type = NLMSG_DONE;
	nl->nlmsg_pid = getpid();
	cn->id.idx = CN_IDX_PROC;
	cn->id.val = CN_VAL_PROC;
	cn->len = sizeof op;
	memcpy(cn->data, &op, sizeof op);
	if (send(fd, msg, nl->nlmsg_len, 0) != (ssize_t)nl->nlmsg_len)
		goto fail;
	return fd;
fail:;
	int e = errno;
	close(fd);
	return -e;
}

int sparc_proc_events_next(int fd, struct sparc_proc_event *out, int max)
{
	char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
	ssize_t len;
	int n = 0;

	do
		len = recv(fd, buf, sizeof buf, 0);
	while (len < 0 && errno == EINTR);
	if (len < 0) {
		if (errno == ENOBUFS && max > 0) {
			out[0].kind = SPARC_PROC_LOST;
			return 1;
		}
		return -errno;
	}
	for (struct nlmsghdr *nl = (struct nlmsghdr *)buf; NLMSG_OK(nl, (size_t)len) && n < max; nl = NLMSG_NEXT(nl, len)) {
		struct cn_msg *cn = NLMSG_DATA(nl);
		struct proc_event *ev;

		if (nl->nlmsg_type == NLMSG_ERROR || nl->nlmsg_type == NLMSG_NOOP)
			continue;
		if (cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC)
			continue;
		ev = (struct proc_event *)cn->data;
		if (ev->what == PROC_EVENT_FORK && ev->event_data.fork.child_pid == ev->event_data.fork.child_tgid) {
			out[n].kind = SPARC_PROC_FORK;
			out[n].pid = ev->event_data.fork.child_tgid;
			out[n].parent = ev->event_data.fork.parent_tgid;
			n++;
		} else if (ev->what == PROC_EVENT_EXIT && ev->event_data.exit.process_pid == ev->event_data.exit.process_tgid) {
			out[n].kind = SPARC_PROC_EXIT;
			out[n].pid = ev->event_data.exit.process_tgid;
			out[n].parent = 0;
			n++;
		}
	}
	return n;
}
