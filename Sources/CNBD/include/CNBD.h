#ifndef SPARC_CNBD_H
#define SPARC_CNBD_H
#include <stddef.h>
#include <stdint.h>

/// A connection to an NBD export (libnbd), read-only.
typedef struct nbd_handle sparc_nbd;

/// Connects to `export_name` on the unix socket `socket`, asking for the `base:allocation`
/// context and, when `bitmap` is not NULL, for `qemu:dirty-bitmap:<bitmap>`. NULL on failure
/// (the reason in `error`).
sparc_nbd *sparc_nbd_open(const char *socket, const char *export_name, const char *bitmap, char *error, size_t error_size);

/// Whether the server agreed to report that bitmap.
int sparc_nbd_has_bitmap(sparc_nbd *h, const char *bitmap);

/// The export's size in bytes, or -1.
int64_t sparc_nbd_size(sparc_nbd *h);

/// Reads `count` bytes at `offset`; 0 or -1 (the reason in `error`).
int sparc_nbd_read(sparc_nbd *h, void *buf, size_t count, uint64_t offset, char *error, size_t error_size);

/// The extents the server reports from `offset` (at most `count` bytes) in one context:
/// `bitmap` NULL for `base:allocation` (flags: 1 hole, 2 zero), else that dirty bitmap
/// (flags: 1 dirty). Fills up to `max` pairs; returns how many, or -1 (the reason in `error`).
int sparc_nbd_extents(
    sparc_nbd *h, const char *bitmap, uint64_t offset, uint64_t count, uint64_t *lengths, uint32_t *flags, int max, char *error,
    size_t error_size);

/// Starts `argv` (qemu-nbd serving an image, by socket activation) and connects to it, asking
/// for `qemu:dirty-bitmap:<bitmap>` too when `bitmap` is not NULL. NULL on failure (the reason
/// in `error`).
sparc_nbd *sparc_nbd_open_command(char *const *argv, const char *bitmap, char *error, size_t error_size);

/// Writes `count` bytes at `offset`; 0 or -1 (the reason in `error`).
int sparc_nbd_write(sparc_nbd *h, const void *buf, size_t count, uint64_t offset, char *error, size_t error_size);

/// Asks the server to make every write durable; 0 or -1 (the reason in `error`).
int sparc_nbd_flush(sparc_nbd *h, char *error, size_t error_size);

void sparc_nbd_close(sparc_nbd *h);

#endif
