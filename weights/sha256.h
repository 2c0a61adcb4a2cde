/* weights/sha256.h - FIPS 180-4 SHA-256: the identity of every blob and input in a report. */
#ifndef MI_SHA256_H
#define MI_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t  buf[64];
    size_t   nbuf;
} mi_sha256_ctx;

void mi_sha256_init(mi_sha256_ctx *c);
void mi_sha256_update(mi_sha256_ctx *c, const void *data, size_t n);
void mi_sha256_final(mi_sha256_ctx *c, uint8_t out[32]);
void mi_sha256_hex(const void *data, size_t n, char hex[65]);
void mi_hex(const uint8_t *bytes, size_t n, char *hex);  /* 2n+1 chars */
/* SHA-256 of a whole file, streamed; returns 0 on success, -1 if unreadable. */
int  mi_sha256_file(const char *path, char hex[65]);

#endif
