/* fuzz/fuzz_assist_exam.c - the JSON body of POST /v1/exams (mi_assist_parse_exam, cJSON under
 * it). Promises: an accepted body gives a terminal of valid spelling, a patient ID and exam
 * number of 1..127 bytes without control characters, an age 0..150 and a sex F, M or O; a
 * refused one says so in a message starting with "exam:". */
#include "fuzz/fuzz.h"
#include "pipelines/assist/request.h"

#include <string.h>

static bool clean(const char *s, size_t cap) {
    const size_t n = strnlen(s, cap);
    if (n < 1 || n >= cap) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mi_assist_exam_req e;
    if (mi_assist_parse_exam((const char *)data, size, &e) == MI_OK) {
        FUZZ_CHECK(mi_assist_valid_id(e.terminal, strnlen(e.terminal, sizeof e.terminal)), "terminal accepted");
        FUZZ_CHECK(clean(e.patient_id, sizeof e.patient_id) && clean(e.exam_number, sizeof e.exam_number), "text fields");
        FUZZ_CHECK(e.age >= 0 && e.age <= 150, "age %d", e.age);
        FUZZ_CHECK(e.sex == 'F' || e.sex == 'M' || e.sex == 'O', "sex %d", e.sex);
    } else {
        FUZZ_CHECK(!strncmp(mi_last_error(), "exam: ", 6), "message: %s", mi_last_error());
    }
    return 0;
}
