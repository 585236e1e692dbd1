#define _GNU_SOURCE
#include "CSparcGuest.h"
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <sys/vfs.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

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
