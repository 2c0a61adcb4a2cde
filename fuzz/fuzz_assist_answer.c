/* fuzz/fuzz_assist_answer.c - the terminal's reader of the diagnosis server's answers
 * (mi_assist_answer_parse, pipelines/assist/terminal.c) on arbitrary bytes: a server that is
 * not ours, or a damaged one, must never crash the terminal beside the endoscope. A refusal says
 * it is about the server's answer; an accepted answer keeps the promises the overlay relies on. */
#include "fuzz/fuzz.h"
#include "pipelines/assist/terminal.h"

#include <math.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mi_assist_answer a;
    if (mi_assist_answer_parse(&a, (const char *)data, size) != MI_OK) {
        FUZZ_CHECK(!strncmp(mi_last_error(), "server answer: ", 15), "message does not say what it is about: %s",
                   mi_last_error());
        return 0;
    }
    FUZZ_CHECK(a.exam_id[0], "accepted without an exam id");
    FUZZ_CHECK(a.n >= 0 && a.n <= MI_ASSIST_MAX_LESIONS && a.n <= a.n_total, "n %d of %d", a.n, a.n_total);
    for (int i = 0; i < a.n; i++) {
        FUZZ_CHECK(a.les[i].score >= 0 && a.les[i].score <= 1, "lesion %d score %g", i, a.les[i].score);
        FUZZ_CHECK(i == 0 || a.les[i - 1].score >= a.les[i].score, "lesion %d not in score order", i);
        for (int j = 0; j < 4; j++) FUZZ_CHECK(isfinite(a.les[i].box[j]), "lesion %d box[%d] not finite", i, j);
        FUZZ_CHECK(memchr(a.les[i].type, 0, sizeof a.les[i].type) != NULL, "lesion %d type not terminated", i);
    }
    /* the overlay draws what was accepted: on a small frame, with boxes anywhere */
    mi_image im;
    if (mi_image_alloc(&im, 64, 48) == MI_OK) {
        mi_overlay_info o = { a.exam_id, a.terminal, "", a.timestamp_ms, &a, 1.f, 1.f, "x", a.reason };
        mi_overlay_draw(&im, &o);
        mi_image_free(&im);
    }
    return 0;
}
