// A narrow face over libnbd (Debian's libnbd-dev): its callbacks are C structs.
#include "CNBD.h"

#include <libnbd.h>
#include <stdio.h>
#include <string.h>

static void say(char *error, size_t size) {
    const char *e = nbd_get_error();
    snprintf(error, size, "%s", e ? e : "unknown NBD error");
}

static void context_name(const char *bitmap, char *out, size_t size) {
    if (bitmap) snprintf(out, size, "qemu:dirty-bitmap:%s", bitmap);
    else snprintf(out, size, "%s", LIBNBD_CONTEXT_BASE_ALLOCATION);
}

sparc_nbd *sparc_nbd_open(const char *socket, const char *export_name, const char *bitmap, char *error, size_t error_size) {
    struct nbd_handle *h = nbd_create();
    if (!h) { say(error, error_size); return NULL; }
    char context[512];
    if (nbd_set_export_name(h, export_name) == -1 || nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1) goto fail;
    if (bitmap) {
        context_name(bitmap, context, sizeof context);
        if (nbd_add_meta_context(h, context) == -1) goto fail;
    }
    if (nbd_connect_unix(h, socket) == -1) goto fail;
    return h;
fail:
    say(error, error_size);
    nbd_close(h);
    return NULL;
}

int sparc_nbd_has_bitmap(sparc_nbd *h, const char *bitmap) {
    char context[512];
    context_name(bitmap, context, sizeof context);
    return nbd_can_meta_context(h, context) == 1;
}

int64_t sparc_nbd_size(sparc_nbd *h) { return nbd_get_size(h); }

int sparc_nbd_read(sparc_nbd *h, void *buf, size_t count, uint64_t offset, char *error, size_t error_size) {
    if (nbd_pread(h, buf, count, offset, 0) == -1) { say(error, error_size); return -1; }
    return 0;
}

struct collected {
    const char *context;
    uint64_t *lengths;
    uint32_t *flags;
    int max, count, seen;
};

static int collect(void *data, const char *metacontext, uint64_t offset, uint32_t *entries, size_t nr_entries, int *error) {
    (void)offset;
    (void)error;
    struct collected *c = data;
    if (strcmp(metacontext, c->context) != 0) return 0;
    c->seen = 1;
    for (size_t i = 0; i + 1 < nr_entries && c->count < c->max; i += 2) {
        c->lengths[c->count] = entries[i];
        c->flags[c->count] = entries[i + 1];
        c->count++;
    }
    return 0;
}

int sparc_nbd_extents(
    sparc_nbd *h, const char *bitmap, uint64_t offset, uint64_t count, uint64_t *lengths, uint32_t *flags, int max, char *error,
    size_t error_size) {
    char context[512];
    context_name(bitmap, context, sizeof context);
    struct collected c = {context, lengths, flags, max, 0, 0};
    nbd_extent_callback cb = {.callback = collect, .user_data = &c, .free = NULL};
    if (nbd_block_status(h, count, offset, cb, 0) == -1) { say(error, error_size); return -1; }
    if (!c.seen) { snprintf(error, error_size, "the server reported no extents for %s", context); return -1; }
    return c.count;
}

sparc_nbd *sparc_nbd_open_command(char *const *argv, const char *bitmap, char *error, size_t error_size) {
    struct nbd_handle *h = nbd_create();
    if (!h) { say(error, error_size); return NULL; }
    char context[512];
    if (bitmap) context_name(bitmap, context, sizeof context);
    if (nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 || (bitmap && nbd_add_meta_context(h, context) == -1)
        || nbd_connect_systemd_socket_activation(h, (char **)argv) == -1) {
        say(error, error_size);
        nbd_close(h);
        return NULL;
    }
    return h;
}

int sparc_nbd_write(sparc_nbd *h, const void *buf, size_t count, uint64_t offset, char *error, size_t error_size) {
    if (nbd_pwrite(h, buf, count, offset, 0) == -1) { say(error, error_size); return -1; }
    return 0;
}

int sparc_nbd_flush(sparc_nbd *h, char *error, size_t error_size) {
    if (nbd_flush(h, 0) == -1) { say(error, error_size); return -1; }
    return 0;
}

void sparc_nbd_close(sparc_nbd *h) {
    if (h) {
        nbd_shutdown(h, 0);
        nbd_close(h);
    }
}
