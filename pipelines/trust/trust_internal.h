/* pipelines/trust/trust_internal.h - helpers shared by the files of pipelines/trust/ only. */
#ifndef MI_TRUST_INTERNAL_H
#define MI_TRUST_INTERNAL_H

#include "pipelines/trust/trust.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/types.h>

/* Whole small text file into buf (NUL-terminated); larger than cap-1 bytes is an error. */
mi_status mi_trust_read_small(const char *path, char *buf, size_t cap, const char *what);
/* fsync of a directory, so that a rename or a new entry in it survives a power cut. */
mi_status mi_trust_fsync_dir(const char *dir);
/* path's bytes replaced all at once: DIR/.name.XXXXXX written, fsynced, renamed over path,
 * DIR fsynced. A crash leaves either the old or the new file, never a mix. */
mi_status mi_trust_write_atomic(const char *path, const void *data, size_t n, mode_t mode);
/* The last error again, with a new code and a prefix (MI_FAIL formats into the buffer that
 * mi_last_error() returns, so it cannot be passed to MI_FAIL directly). */
mi_status mi_trust_rewrap(mi_status code, const char *prefix);

/* An update manifest (docs/trust.md, "Updates") as fetched: n bytes of JSON (no NUL terminator
 * needed); url names it in errors. Checks every field the update uses, the signature fields
 * with the .sig parser. Call mi_manifest_free afterwards whatever the status. */
typedef struct {
    char         model[128], released[64], blob_url[1024];
    long long    size;
    double       min_accuracy;  /* "min_reference_accuracy" (optional), else -1 */
    mi_signature sig;   /* key_id, sha256, model_version, signature */
    cJSON       *json;  /* owns the hardware list */
    const cJSON *hardware;
} mi_manifest;
mi_status mi_manifest_parse(mi_manifest *m, const char *text, size_t n, const char *url);
void      mi_manifest_free(mi_manifest *m);
/* The manifest's blob_url (relative or absolute) resolved against the manifest's own URL. */
mi_status mi_manifest_blob_url(const char *base, const char *rel, char *out, size_t cap);

#endif
