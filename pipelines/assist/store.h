/* pipelines/assist/store.h - the findings database of the diagnosis server (SQLite): exams,
 * findings (with a thumbnail PNG each) and events (exam closings, alerts), every table
 * append-only and hash-chained (docs/assist.md, "Findings database").
 *
 * Durability: WAL with synchronous=FULL, so a transaction that COMMIT returned for is on disk;
 * the server answers only after that, so an acknowledged finding survives a kill -9 or a power
 * cut. One connection, serialized by a mutex inside the store: SQLite has one writer anyway,
 * and reads are short. */
#ifndef MI_ASSIST_STORE_H
#define MI_ASSIST_STORE_H

#include "medinfer.h"
#include "pipelines/assist/request.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

typedef struct mi_assist_store mi_assist_store;

typedef struct {
    char exam_id[MI_ASSIST_ID_MAX];
    char terminal[MI_ASSIST_ID_MAX];
    char patient_id[MI_ASSIST_TEXT_MAX];
    char exam_number[MI_ASSIST_TEXT_MAX];
    int  age;
    char sex;
    char opened[32];         /* ISO 8601 UTC, milliseconds */
    char closed[32];         /* "" while open */
} mi_assist_exam;

/* One lesion of one frame, as stored. */
typedef struct {
    const char *exam_id, *terminal;
    long long   timestamp_ms;
    const char *trigger;
    const char *type;            /* the label */
    double      score;
    const char *probs_json;      /* {"label": p, ...} */
    const char *box_json;        /* [x1, y1, x2, y2] */
    bool        high_risk;       /* also writes an alert event */
    const char *model_arch, *model_version, *model_sha256;
    const void *thumbnail;       /* PNG */
    size_t      thumbnail_size;
} mi_assist_finding;

/* Creates the tables (or checks an existing file has them). */
mi_status mi_assist_store_open(mi_assist_store **s, const char *path);
void      mi_assist_store_close(mi_assist_store *s);

/* A new exam for r->terminal; the terminal's open exam, if any, is closed in the same
 * transaction (an exam_closed event naming the new one). by: who asked (a workstation's name). */
mi_status mi_assist_store_open_exam(mi_assist_store *s, const mi_assist_exam_req *r, const char *by,
                                    mi_assist_exam *out);
/* *found = false when there is no such exam; closing a closed exam changes nothing. */
mi_status mi_assist_store_close_exam(mi_assist_store *s, const char *exam_id, const char *by, bool *found,
                                     mi_assist_exam *out);
mi_status mi_assist_store_get_exam(mi_assist_store *s, const char *exam_id, bool *found, mi_assist_exam *out);
/* The terminal's open exam (*found = false when it has none). */
mi_status mi_assist_store_current_exam(mi_assist_store *s, const char *terminal, bool *found, mi_assist_exam *out);
/* The exam as the API shows it: {"exam_id", "terminal", "patient_id", "exam_number", "age",
 * "sex", "opened", "status": "open"|"closed"[, "closed"]}. */
cJSON    *mi_assist_exam_json(const mi_assist_exam *e);

/* Appends n findings (and an alert event for each high-risk one) in one transaction, which is
 * committed (and so on disk) when this returns MI_OK; ids[i] gets finding i's id. */
mi_status mi_assist_store_add_findings(mi_assist_store *s, const mi_assist_finding *f, int n, long long *ids);
/* {"exam_id", "findings": [...]} in the order they were stored. */
mi_status mi_assist_store_findings_json(mi_assist_store *s, const char *exam_id, cJSON **out);
/* The finding's thumbnail (malloc'd: free) and its exam; *found = false when no such finding. */
mi_status mi_assist_store_thumbnail(mi_assist_store *s, long long fid, bool *found, char exam_id[MI_ASSIST_ID_MAX],
                                    void **png, size_t *n);

/* --verify-db: walks every table's chain. MI_OK with intact = false (and the reason in
 * mi_last_error()) when a row was edited, deleted or inserted; an error when the file cannot be
 * read as a findings database at all. */
typedef struct {
    bool      intact;
    long long rows[3];           /* exams, findings, events */
    char      head[3][96];       /* "SEQ:HASH" of each table's last row, "0:" when empty */
} mi_assist_verify_report;
mi_status mi_assist_store_verify(const char *path, mi_assist_verify_report *r);
/* The same on a database's bytes in memory (read in place, never written); name stands for the
 * path in messages. */
mi_status mi_assist_store_verify_memory(const void *data, size_t n, const char *name, mi_assist_verify_report *r);

/* "2026-12-01T17:05:03.123Z" now */
void mi_assist_now_iso(char out[32]);

#endif
