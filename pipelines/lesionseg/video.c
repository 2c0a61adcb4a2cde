/* pipelines/lesionseg/video.c - a recorded endoscopy video: every K-th frame segmented at its
 * coded size, with the same steps as a still image, and its overlay written to an MP4 at fps / K
 * so that the overlaid video plays at the recording's speed.
 *
 * Frames are taken by their decode order index (the first, the K+1-th, ...), with the capture
 * time from the stream's timestamps (pipelines/io/video.h): a variable-frame-rate recording keeps
 * its true times in the report. Memory is one decoded frame, one overlay frame and the maps of
 * one frame, whatever the video's length. */
#include "pipelines/lesionseg/lesionseg.h"

#include "pipelines/io/video.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mi_status mi_lesionseg_video(mi_lesionseg *l, const char *path, const mi_lesionseg_video_opts *o,
                             int max_components, cJSON **out, bool *damaged) {
    *out = NULL;
    *damaged = false;
    const int every = o->every > 0 ? o->every : 1;
    mi_video *v = NULL;
    mi_video_writer *vw = NULL;
    uint8_t *canvas = NULL, *ov = NULL;   /* the padded frame the writer takes; the overlay */
    cJSON *res = NULL;
    mi_lesionseg_result r = { 0 };
    mi_status st = mi_video_open(&v, path, 0);
    if (st) return st;
    const mi_video_info *info = mi_video_get_info(v);
    const int w = info->out_w, h = info->out_h;
    if ((st = mi_lesionseg_check_size(path, w, h))) goto done;
    /* H.264 in 4:2:0 needs even sides: pad with black rather than cut a row of the image off */
    const int cw = w + (w & 1), ch = h + (h & 1);
    const double in_fps = info->fps > 0 ? info->fps : 25;
    const int out_fps = (int)lround(in_fps / every) < 1 ? 1 : (int)lround(in_fps / every);
    if (o->video_out) {
        if (!(canvas = calloc((size_t)cw * ch, 3)) || !(ov = malloc((size_t)w * h * 3))) {
            st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for a %dx%d frame", path, cw, ch);
            goto done;
        }
        if ((st = mi_video_writer_open(&vw, o->video_out, cw, ch, out_fps, 20))) goto done;
    }
    res = cJSON_CreateObject();
    cJSON *vi = cJSON_AddObjectToObject(res, "video");
    cJSON_AddStringToObject(vi, "container", info->container);
    cJSON_AddStringToObject(vi, "codec", info->codec);
    cJSON_AddNumberToObject(vi, "width", w);
    cJSON_AddNumberToObject(vi, "height", h);
    cJSON_AddItemToObject(vi, "fps", mi_lesionseg_number(info->fps > 0 ? info->fps : NAN));
    if (info->duration_ms >= 0) cJSON_AddNumberToObject(vi, "duration_ms", (double)info->duration_ms);
    else cJSON_AddNullToObject(vi, "duration_ms");
    cJSON_AddNumberToObject(res, "every", every);
    cJSON *frames = cJSON_CreateArray();
    int64_t read = 0, done_n = 0, with_lesion = 0, best_index = -1;
    double best_pct = -1, ms[4] = { 0 };
    for (;;) {
        mi_video_frame f;
        bool got;
        if ((st = mi_video_read(v, &f, &got))) break;
        if (!got) break;
        read++;
        if (f.index % every) continue;
        if (f.w != w || f.h != h) {
            st = MI_FAIL(MI_ERR_FORMAT, "%s: frame %lld is %dx%d, the stream began at %dx%d", path, (long long)f.index,
                         f.w, f.h, w, h);
            break;
        }
        if ((st = mi_lesionseg_run(l, f.px, w, h, (size_t)w * 3, &r))) {
            char why[1024];
            snprintf(why, sizeof why, "%s", mi_last_error());
            st = MI_FAIL(st, "%s: frame %lld (%.3f s): %s", path, (long long)f.index, f.t_ms / 1000.0, why);
            break;
        }
        ms[0] += r.ms_pre, ms[1] += r.ms_depth, ms[2] += r.ms_seg, ms[3] += r.ms_post;
        cJSON *fj = mi_lesionseg_result_json(&r, max_components);
        cJSON_DeleteItemFromObjectCaseSensitive(fj, "width");    /* the video's, given once above */
        cJSON_DeleteItemFromObjectCaseSensitive(fj, "height");
        cJSON *item = cJSON_CreateObject();
        cJSON_AddNumberToObject(item, "index", (double)f.index);
        cJSON_AddNumberToObject(item, "t_ms", (double)f.t_ms);
        for (cJSON *it = fj->child; it;) {
            cJSON *next = it->next;
            cJSON_AddItemToObject(item, it->string, cJSON_DetachItemViaPointer(fj, it));
            it = next;
        }
        cJSON_Delete(fj);
        cJSON_AddItemToArray(frames, item);
        done_n++;
        if (r.area) with_lesion++;
        if (r.area_pct > best_pct) best_pct = r.area_pct, best_index = f.index;
        if (vw) {
            mi_lesionseg_overlay(ov, f.px, (size_t)w * 3, &r);
            for (int y = 0; y < h; y++) memcpy(canvas + (size_t)y * cw * 3, ov + (size_t)y * w * 3, (size_t)w * 3);
            if ((st = mi_video_writer_add(vw, canvas))) break;
        }
        mi_lesionseg_result_free(&r);
        if (o->progress) o->progress(o->user, read, done_n);
    }
    mi_lesionseg_result_free(&r);
    if (!st && done_n == 0)
        st = MI_FAIL(MI_ERR_FORMAT, "%s: no frame could be decoded%s%s", path, mi_video_damage(v)[0] ? ": " : "",
                     mi_video_damage(v));
    if (vw) {
        mi_status cs = mi_video_writer_close(vw);
        vw = NULL;
        if (!st) st = cs;
    }
    if (st) {
        cJSON_Delete(frames);
        goto done;
    }
    cJSON_AddNumberToObject(res, "frames_decoded", (double)read);
    cJSON_AddNumberToObject(res, "frames_segmented", (double)done_n);
    cJSON_AddNumberToObject(res, "frames_with_lesion", (double)with_lesion);
    cJSON_AddItemToObject(res, "max_area_pct", mi_lesionseg_number(best_pct));
    cJSON_AddNumberToObject(res, "max_area_frame", (double)best_index);
    const char *dmg = mi_video_damage(v);
    *damaged = dmg[0] != 0;
    cJSON_AddBoolToObject(res, "decode_complete", !*damaged);
    if (*damaged) cJSON_AddStringToObject(res, "damage", dmg);
    if (o->video_out) {
        cJSON *vo = cJSON_AddObjectToObject(res, "video_out");
        cJSON_AddStringToObject(vo, "path", o->video_out);
        cJSON_AddNumberToObject(vo, "fps", out_fps);
        cJSON_AddNumberToObject(vo, "frames", (double)done_n);
        cJSON_AddNumberToObject(vo, "width", cw);
        cJSON_AddNumberToObject(vo, "height", ch);
    } else {
        cJSON_AddNullToObject(res, "video_out");
    }
    cJSON_AddItemToObject(res, "frames", frames);
    cJSON *t = cJSON_AddObjectToObject(res, "timing_ms");
    static const char *const step[4] = { "preprocess", "depth", "seg", "post" };
    for (int i = 0; i < 4; i++) cJSON_AddItemToObject(t, step[i], mi_lesionseg_number(ms[i]));
    *out = res;
    res = NULL;
done:
    if (vw) mi_video_writer_close(vw);
    free(canvas);
    free(ov);
    cJSON_Delete(res);
    mi_video_close(v);
    return st;
}
