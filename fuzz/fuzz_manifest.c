/* fuzz/fuzz_manifest.c - the signed-update manifest (pipelines/trust/update.c) on arbitrary bytes:
 * mi_manifest_parse as mi_model_update calls it on a fetched body, then what the update does
 * with an accepted manifest before downloading anything: the version comparison, the hardware
 * list, the blob URL resolved against the manifest's, the signed message. The same bytes also go
 * through mi_signature_parse as a .sig file (pipelines/trust/sign.c), which the manifest's
 * signature fields reach only after being reformatted. No network: libcurl only parses URLs. */
#include "fuzz/fuzz.h"
#include "pipelines/trust/trust_internal.h"

#include <string.h>

#define URL "https://updates.example.org/models/sites/manifest.json"

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mi_manifest m;
    if (mi_manifest_parse(&m, (const char *)data, size, URL) != MI_OK) {
        FUZZ_CHECK(strstr(mi_last_error(), URL) != NULL, "message does not name the manifest: %s", mi_last_error());
    } else {
        FUZZ_CHECK(m.size >= 1 && strlen(m.sig.sha256) == 64 && strlen(m.sig.key_id) == 16 && cJSON_IsArray(m.hardware),
                   "accepted: size %lld sha256 '%s' key '%s'", m.size, m.sig.sha256, m.sig.key_id);
        int cmp;
        FUZZ_CHECK(mi_version_compare(m.sig.model_version, "2026.11.2", &cmp) == MI_OK,
                   "accepted model_version '%s' does not compare", m.sig.model_version);
        const cJSON *h;
        cJSON_ArrayForEach(h, m.hardware)
            if (cJSON_IsString(h)) sink += mi_hwcode_equal(h->valuestring, "0A1B-2C3D-4E5F-6A7B");
        char url[1100];
        if (mi_manifest_blob_url(URL, m.blob_url, url, sizeof url) == MI_OK) sink += strlen(url);
        char msg[256];
        FUZZ_CHECK(mi_signature_message(msg, sizeof msg, m.sig.sha256, m.sig.model_version) > 0,
                   "accepted signature fields make no message");
        char text[512];
        mi_signature sig;
        mi_signature_format(&m.sig, text, sizeof text);
        FUZZ_CHECK(mi_signature_parse(text, "reformatted", &sig) == MI_OK && !strcmp(sig.key_id, m.sig.key_id) &&
                   !strcmp(sig.sha256, m.sig.sha256) && !strcmp(sig.model_version, m.sig.model_version) &&
                   !memcmp(sig.sig, m.sig.sig, sizeof sig.sig),
                   "the manifest's signature does not survive a .sig round trip: %s", text);
    }
    mi_manifest_free(&m);

    char *text = malloc(size + 1);  /* a .sig file as mi_signature_read hands it over */
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    mi_signature sig;
    if (mi_signature_parse(text, "fuzz.sig", &sig) == MI_OK)
        FUZZ_CHECK(strlen(sig.sha256) == 64 && strlen(sig.key_id) == 16 && sig.model_version[0],
                   "accepted .sig: sha256 '%s' key '%s'", sig.sha256, sig.key_id);
    free(text);
    return 0;
}
