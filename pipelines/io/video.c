/* pipelines/io/video.c - see video.h. FFmpeg 5 (libavcodec 59) send/receive API. */
#include "pipelines/io/video.h"

#include <libavcodec/avcodec.h>
#include <libavdevice/avdevice.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct mi_video {
    char             path[512];
    AVFormatContext *fmt;
    AVCodecContext  *dec;
    AVStream        *st;
    int              stream;
    AVPacket        *pkt;
    AVFrame         *frame;
    struct SwsContext *sws;
    uint8_t         *rgb;
    size_t           rgb_cap;
    int              short_side;
    mi_video_info    info;
    bool             flushing;      /* the demuxer is done: the decoder is being drained */
    int64_t          start_pts;     /* subtracted so the first frame is at ~0 ms */
    double           frame_ms;      /* nominal frame duration, for frames without timestamps */
    int64_t          nframes, bad_packets, last_ms;
    int64_t          damaged_frames, first_damaged_ms;  /* frames output with errors concealed */
    char             damage[320];   /* the first packet-level problem seen */
    char             summary[700];  /* at the end: truncation first, then damaged frames, that problem */
};

static const char *averr(int e, char *buf, size_t n) { av_strerror(e, buf, n); return buf; }

/* "after 12.3 s" / "before the first frame": where in the video a problem showed up */
static const char *where(const mi_video *v, char *buf, size_t n) {
    if (v->last_ms < 0) snprintf(buf, n, "before the first frame");
    else snprintf(buf, n, "after %.1f s", v->last_ms / 1000.0);
    return buf;
}

static void note_damage(mi_video *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_damage(mi_video *v, const char *fmt, ...) {
    if (v->damage[0]) return;  /* the first problem is the one that explains the rest */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->damage, sizeof v->damage, fmt, ap);
    va_end(ap);
}

mi_status mi_video_check_path(const char *path) {
    if (strstr(path, "://")) return MI_OK;   /* a URL: FFmpeg's to judge */
    struct stat sb;
    if (stat(path, &sb) != 0) {
        int e = errno;
        return MI_FAIL(MI_ERR_IO, "%s: %s", path, e == ENOENT ? "no such file" : strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) return MI_FAIL(MI_ERR_IO, "%s: is a directory, not a video file", path);
    if (S_ISREG(sb.st_mode) && sb.st_size == 0) return MI_FAIL(MI_ERR_FORMAT, "%s: empty file (0 bytes)", path);
    if (access(path, R_OK) != 0) return MI_FAIL(MI_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    return MI_OK;   /* devices and pipes: FFmpeg may read them */
}

/* A numbered image sequence ("frames/%04d.png"): FFmpeg's image2 demuxer reads it, at the frame
 * rate it is told (it assumes 25 fps otherwise). The folder must exist; a missing first image is
 * FFmpeg's to report. */
static bool is_sequence(const char *path) {
    if (strstr(path, "://")) return false;
    for (const char *p = strchr(path, '%'); p; p = strchr(p + 1, '%')) {
        const char *q = p + 1;   /* %d or %0Nd: "clip%20a.mp4" is a file name, not a pattern */
        while (*q >= '0' && *q <= '9') q++;
        if (*q == 'd') return true;
    }
    return false;
}

static bool is_v4l2(const char *path) { return !strncmp(path, "/dev/video", 10); }

static mi_status open_input(mi_video *v, const char *path, double fps) {
    const AVInputFormat *ifmt = NULL;
    AVDictionary *opts = NULL;
    char eb[128], rate[32];
    if (is_sequence(path)) {
        ifmt = av_find_input_format("image2");
        snprintf(rate, sizeof rate, "%g", fps > 0 ? fps : 25.0);
        av_dict_set(&opts, "framerate", rate, 0);
    } else if (is_v4l2(path)) {
        /* capture cards are devices, which FFmpeg's probing of files never picks: name the demuxer */
        avdevice_register_all();
        ifmt = av_find_input_format("video4linux2");
        if (!ifmt) return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: this FFmpeg build has no V4L2 input", path);
        if (fps > 0) {
            snprintf(rate, sizeof rate, "%g", fps);
            av_dict_set(&opts, "framerate", rate, 0);
        }
    }
    int r = avformat_open_input(&v->fmt, path, ifmt, &opts);
    av_dict_free(&opts);
    if (r < 0)
        return MI_FAIL(r == AVERROR(ENOENT) ? MI_ERR_IO : MI_ERR_FORMAT, "%s: cannot open as a video: %s",
                       path, averr(r, eb, sizeof eb));
    return MI_OK;
}

mi_status mi_video_open(mi_video **out, const char *path, int short_side) {
    return mi_video_open_source(out, path, short_side, 0);
}

mi_status mi_video_open_source(mi_video **out, const char *path, int short_side, double fps) {
    *out = NULL;
    if (is_sequence(path)) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        struct stat sb;
        if (slash) {
            *slash = 0;
            if (stat(dir[0] ? dir : "/", &sb) != 0 || !S_ISDIR(sb.st_mode))
                return MI_FAIL(MI_ERR_IO, "%s: folder '%s' of the image sequence does not exist", path, dir);
        }
    } else {
        mi_status cst = mi_video_check_path(path);
        if (cst != MI_OK) return cst;
    }
    mi_video *v = calloc(1, sizeof *v);
    if (!v) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    snprintf(v->path, sizeof v->path, "%s", path);
    v->short_side = short_side;
    v->last_ms = -1;
    char eb[128];
    mi_status st = MI_OK;
    int r;
    if ((st = open_input(v, path, fps)) != MI_OK) goto fail;
    if ((r = avformat_find_stream_info(v->fmt, NULL)) < 0) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: cannot read stream information: %s", path, averr(r, eb, sizeof eb));
        goto fail;
    }
    const AVCodec *codec = NULL;
    v->stream = av_find_best_stream(v->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (v->stream < 0 || !codec) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: %s", path, v->stream == AVERROR_DECODER_NOT_FOUND
                     ? "no decoder for its video stream in this FFmpeg build" : "has no video stream");
        goto fail;
    }
    v->st = v->fmt->streams[v->stream];
    v->dec = avcodec_alloc_context3(codec);
    v->pkt = av_packet_alloc();
    v->frame = av_frame_alloc();
    if (!v->dec || !v->pkt || !v->frame) { st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    avcodec_parameters_to_context(v->dec, v->st->codecpar);
    /* One decoding thread: the same frames, flags and pixels on every machine and every run.
     * With FFmpeg's frame threads (what thread_count 0 picks for H.264) a frame can be handed out
     * before the thread that decoded it has concealed its errors, so its decode_error_flags - and
     * damaged_frames - depended on timing: one file with 11 concealed frames gave anything from 0
     * to 11 over 20 runs here (tests/test_endoqc.c, concealed_decoding_errors_are_damage). Slice
     * threads flag every one, but conceal with other pixels than one thread does (the same for 2
     * to 8 threads, another for 1), so a damaged video would be classified differently on a
     * 1-core machine; and a single-slice stream, as most encoders write at these sizes, gains
     * nothing from them. endoqc decodes on a thread of its own beside the network
     * (pipelines/endoqc/feed.h), which hides most of the speed frame threads gave. */
    v->dec->thread_count = 1;
    if ((r = avcodec_open2(v->dec, codec, NULL)) < 0) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: cannot open the %s decoder: %s", path, codec->name, averr(r, eb, sizeof eb));
        goto fail;
    }
    mi_video_info *in = &v->info;
    snprintf(in->container, sizeof in->container, "%s", v->fmt->iformat->name);
    snprintf(in->codec, sizeof in->codec, "%s", codec->name);
    in->width = v->st->codecpar->width;
    in->height = v->st->codecpar->height;
    AVRational fr = v->st->avg_frame_rate.num ? v->st->avg_frame_rate : v->st->r_frame_rate;
    in->fps = fr.num && fr.den ? av_q2d(fr) : 0;
    v->frame_ms = in->fps > 0 ? 1000.0 / in->fps : 40.0;
    if (v->st->duration != AV_NOPTS_VALUE && v->st->duration > 0)
        in->duration_ms = av_rescale_q(v->st->duration, v->st->time_base, (AVRational){1, 1000});
    else if (v->fmt->duration != AV_NOPTS_VALUE && v->fmt->duration > 0)
        in->duration_ms = v->fmt->duration / (AV_TIME_BASE / 1000);
    else
        in->duration_ms = -1;
    /* The frame count a header states can be more than the duration of what is there: an AVI cut
     * short loses its index, and FFmpeg then measures the duration from the packets it finds, so a
     * truncated file would look whole. The header's count (AVI strh, MP4 stts) is the claim. */
    if (v->st->nb_frames > 0 && in->fps > 0) {
        /* a crafted header (2^40 frames at 1/2^30 fps) states more than int64 milliseconds: capped
         * (at ~285,000 years) before the cast, which would be undefined, still longer than the file */
        const double stated = fmin(v->st->nb_frames * 1000.0 / in->fps + 0.5, 9.0e15);
        if (stated > in->duration_ms + v->frame_ms) in->duration_ms = (int64_t)stated;
    }
    v->start_pts = v->st->start_time;   /* AV_NOPTS_VALUE: taken from the first frame */
    in->out_w = in->width;
    in->out_h = in->height;
    *out = v;
    return MI_OK;
fail:
    mi_video_close(v);
    return st;
}

void mi_video_close(mi_video *v) {
    if (!v) return;
    sws_freeContext(v->sws);
    av_frame_free(&v->frame);
    av_packet_free(&v->pkt);
    avcodec_free_context(&v->dec);
    avformat_close_input(&v->fmt);
    free(v->rgb);
    free(v);
}

const mi_video_info *mi_video_get_info(const mi_video *v) { return &v->info; }
const char *mi_video_damage(const mi_video *v) { return v->summary[0] ? v->summary : v->damage; }
int64_t mi_video_bad_packets(const mi_video *v) { return v->bad_packets; }
int64_t mi_video_damaged_frames(const mi_video *v) { return v->damaged_frames; }
int64_t mi_video_last_ms(const mi_video *v) { return v->last_ms; }

bool mi_video_truncated(const mi_video *v) {
    /* the last frame starts one frame before the stated end; two frames of slack for rounding */
    return v->info.duration_ms > 0 && v->last_ms + 3 * v->frame_ms < (double)v->info.duration_ms;
}

/* The output size for a frame: shorter display side -> short_side, aspect kept. */
static void out_size(const mi_video *v, const AVFrame *f, int *ow, int *oh) {
    if (v->short_side <= 0) { *ow = f->width; *oh = f->height; return; }
    AVRational sar = f->sample_aspect_ratio.num ? f->sample_aspect_ratio : v->st->sample_aspect_ratio;
    /* a pixel aspect ratio outside [1/16, 16] (a container can state 1/32767 or a negative one) is
     * no display's: square pixels instead, as for none */
    double r = sar.num && sar.den ? av_q2d(sar) : 1.0;
    if (!(r >= 1.0 / 16 && r <= 16)) r = 1.0;
    const double dw = f->width * r, dh = f->height;
    /* the long side, capped before the cast to int (fmin also turns inf and NaN into the cap) */
    const double lng = fmin((dw <= dh ? dh / dw : dw / dh) * v->short_side + 0.5, 1 << 20);
    if (dw <= dh) { *ow = v->short_side; *oh = (int)lng; }
    else          { *oh = v->short_side; *ow = (int)lng; }
    if (*ow < 1) *ow = 1;
    if (*oh < 1) *oh = 1;
}

static mi_status convert(mi_video *v, mi_video_frame *f) {
    AVFrame *fr = v->frame;
    int ow, oh;
    out_size(v, fr, &ow, &oh);
    size_t need = (size_t)ow * oh * 3 + 64;  /* swscale may write a little past a packed row */
    if (need > v->rgb_cap) {
        uint8_t *p = realloc(v->rgb, need);
        if (!p) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory for a %dx%d frame", v->path, ow, oh);
        v->rgb = p;
        v->rgb_cap = need;
    }
    v->sws = sws_getCachedContext(v->sws, fr->width, fr->height, fr->format, ow, oh, AV_PIX_FMT_RGB24,
                                  SWS_AREA, NULL, NULL, NULL);
    if (!v->sws)
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: cannot convert pixel format %s to RGB", v->path,
                       av_get_pix_fmt_name(fr->format));
    /* HD recordings are BT.709; treating them as BT.601 would shift every colour slightly */
    int cs = fr->colorspace == AVCOL_SPC_BT709 ? SWS_CS_ITU709 : SWS_CS_DEFAULT;
    int full = fr->color_range == AVCOL_RANGE_JPEG;
    int *inv, *tab, srcr, dstr, b, c, s;
    if (sws_getColorspaceDetails(v->sws, &inv, &srcr, &tab, &dstr, &b, &c, &s) >= 0)
        sws_setColorspaceDetails(v->sws, sws_getCoefficients(cs), full || srcr, tab, 1, b, c, s);
    uint8_t *dst[4] = { v->rgb, NULL, NULL, NULL };
    int dst_stride[4] = { ow * 3, 0, 0, 0 };
    sws_scale(v->sws, (const uint8_t *const *)fr->data, fr->linesize, 0, fr->height, dst, dst_stride);

    int64_t ts = fr->best_effort_timestamp;
    if (ts == AV_NOPTS_VALUE) {
        f->t_ms = v->last_ms < 0 ? 0 : v->last_ms + (int64_t)(v->frame_ms + 0.5);  /* no timestamp: nominal rate */
    } else {
        if (v->start_pts == AV_NOPTS_VALUE) v->start_pts = ts;
        f->t_ms = av_rescale_q(ts - v->start_pts, v->st->time_base, (AVRational){1, 1000});
    }
    f->pts = ts;
    f->px = v->rgb;
    f->w = ow;
    f->h = oh;
    f->index = v->nframes++;
    v->last_ms = f->t_ms;
    v->info.out_w = ow;
    v->info.out_h = oh;
    return MI_OK;
}

/* End of the usable stream: a cut-off file often ends in a half packet, so "truncated" is said
 * first (it is the cause), then the frames that decoded with errors, then the first problem seen. */
static void finish(mi_video *v) {
    size_t n = 0, cap = sizeof v->summary;
    v->summary[0] = 0;
    if (v->last_ms < 0)
        n += (size_t)snprintf(v->summary, cap, "no frame could be decoded (file truncated or damaged?)");
    else if (mi_video_truncated(v))
        n += (size_t)snprintf(v->summary, cap, "stream ends at %.1f s of a stated %.1f s (file truncated?)",
                              v->last_ms / 1000.0, v->info.duration_ms / 1000.0);
    if (v->damaged_frames > 0 && n < cap)
        n += (size_t)snprintf(v->summary + n, cap - n, "%s%lld frame%s decoded with errors concealed by the "
                              "decoder (first at %.1f s)", n ? "; " : "", (long long)v->damaged_frames,
                              v->damaged_frames == 1 ? "" : "s", v->first_damaged_ms / 1000.0);
    if (v->damage[0] && n < cap)
        snprintf(v->summary + n, cap - n, "%s%s", n ? "; " : "", v->damage);
}

mi_status mi_video_read(mi_video *v, mi_video_frame *f, bool *got) {
    char eb[128], wb[48];
    *got = false;
    for (;;) {
        int r = avcodec_receive_frame(v->dec, v->frame);
        if (r == 0) {
            /* the decoder output a frame but had to conceal errors in it (or marks it corrupt):
             * its pixels are not what was recorded, whatever the packets' status said */
            bool damaged = v->frame->decode_error_flags || (v->frame->flags & AV_FRAME_FLAG_CORRUPT);
            mi_status st = convert(v, f);
            av_frame_unref(v->frame);
            if (st == MI_OK && damaged && v->damaged_frames++ == 0) v->first_damaged_ms = f->t_ms;
            if (st == MI_OK) *got = true;
            return st;
        }
        if (r == AVERROR_EOF) { finish(v); return MI_OK; }
        if (r != AVERROR(EAGAIN)) {  /* a frame that failed to decode: concealment gave up on it */
            v->bad_packets++;
            note_damage(v, "decoding error %s: %s", where(v, wb, sizeof wb), averr(r, eb, sizeof eb));
            if (v->bad_packets > 100000) { finish(v); return MI_OK; }   /* nothing but errors: stop */
            continue;
        }
        if (v->flushing) { finish(v); return MI_OK; }  /* EAGAIN while draining: nothing more will come */
        r = av_read_frame(v->fmt, v->pkt);
        if (r < 0) {
            if (r != AVERROR_EOF)
                note_damage(v, "read error %s: %s", where(v, wb, sizeof wb), averr(r, eb, sizeof eb));
            v->flushing = true;
            avcodec_send_packet(v->dec, NULL);
            continue;
        }
        if (v->pkt->stream_index == v->stream) {
            if (v->pkt->flags & AV_PKT_FLAG_CORRUPT) {   /* e.g. the last packet of a cut file */
                v->bad_packets++;
                note_damage(v, "damaged packet %s (the container marks it corrupt)", where(v, wb, sizeof wb));
            }
            r = avcodec_send_packet(v->dec, v->pkt);
            if (r < 0 && r != AVERROR(EAGAIN)) {
                v->bad_packets++;
                note_damage(v, "corrupt data %s (%s); skipped", where(v, wb, sizeof wb), averr(r, eb, sizeof eb));
            }
        }
        av_packet_unref(v->pkt);
    }
}

mi_status mi_video_seek_ms(mi_video *v, int64_t t_ms) {
    int64_t start = v->start_pts == AV_NOPTS_VALUE ? 0 : v->start_pts;
    int64_t ts = start + av_rescale_q(t_ms < 0 ? 0 : t_ms, (AVRational){1, 1000}, v->st->time_base);
    int r = av_seek_frame(v->fmt, v->stream, ts, AVSEEK_FLAG_BACKWARD);
    if (r < 0) {
        char eb[128];
        /* some files cannot seek (no index): start again from the beginning instead */
        if ((r = av_seek_frame(v->fmt, v->stream, start, AVSEEK_FLAG_BACKWARD | AVSEEK_FLAG_ANY)) < 0 &&
            (r = avformat_seek_file(v->fmt, -1, INT64_MIN, 0, 0, 0)) < 0)
            return MI_FAIL(MI_ERR_FORMAT, "%s: cannot seek to %.1f s: %s", v->path, t_ms / 1000.0,
                           averr(r, eb, sizeof eb));
    }
    avcodec_flush_buffers(v->dec);
    v->flushing = false;
    v->summary[0] = 0;   /* recomputed when this pass ends */
    return MI_OK;
}

/* ---- writing ---------------------------------------------------------------------------- */

struct mi_video_writer {
    char             path[512];
    AVFormatContext *oc;
    AVCodecContext  *enc;
    AVStream        *st;
    AVFrame         *frame;
    AVPacket        *pkt;
    struct SwsContext *sws;
    int              w, h;
    int64_t          n;
};

static mi_status drain(mi_video_writer *vw) {
    char eb[128];
    for (;;) {
        int r = avcodec_receive_packet(vw->enc, vw->pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return MI_OK;
        if (r < 0) return MI_FAIL(MI_ERR_IO, "%s: encoder failed: %s", vw->path, averr(r, eb, sizeof eb));
        /* one frame long: without it MP4 ends the edit list at the last frame's start, and
         * players (and our reader) drop that frame */
        if (vw->pkt->duration <= 0) vw->pkt->duration = 1;
        av_packet_rescale_ts(vw->pkt, vw->enc->time_base, vw->st->time_base);
        vw->pkt->stream_index = vw->st->index;
        if ((r = av_interleaved_write_frame(vw->oc, vw->pkt)) < 0)
            return MI_FAIL(MI_ERR_IO, "%s: cannot write: %s", vw->path, averr(r, eb, sizeof eb));
    }
}

static void writer_free(mi_video_writer *vw) {
    if (!vw) return;
    sws_freeContext(vw->sws);
    av_frame_free(&vw->frame);
    av_packet_free(&vw->pkt);
    avcodec_free_context(&vw->enc);
    if (vw->oc) {
        if (vw->oc->pb) avio_closep(&vw->oc->pb);
        avformat_free_context(vw->oc);
    }
    free(vw);
}

mi_status mi_video_writer_open(mi_video_writer **out, const char *path, int w, int h, int fps, int crf) {
    *out = NULL;
    if (w <= 0 || h <= 0 || (w | h) & 1 || fps <= 0)
        return MI_FAIL(MI_ERR_ARG, "%s: video size %dx%d at %d fps: need even sizes and fps > 0", path, w, h, fps);
    mi_video_writer *vw = calloc(1, sizeof *vw);
    if (!vw) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path);
    snprintf(vw->path, sizeof vw->path, "%s", path);
    vw->w = w;
    vw->h = h;
    char eb[128];
    mi_status st;
    int r = avformat_alloc_output_context2(&vw->oc, NULL, NULL, path);
    if (r < 0 || !vw->oc) {
        st = MI_FAIL(MI_ERR_ARG, "%s: no container for this file name (use .mp4, .mkv or .avi)", path);
        goto fail;
    }
    const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
    if (!codec) codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
    if (!codec) { st = MI_FAIL(MI_ERR_UNSUPPORTED, "%s: this FFmpeg has neither libx264 nor an MPEG-4 encoder", path); goto fail; }
    vw->enc = avcodec_alloc_context3(codec);
    vw->frame = av_frame_alloc();
    vw->pkt = av_packet_alloc();
    if (!vw->enc || !vw->frame || !vw->pkt) { st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    vw->enc->width = w;
    vw->enc->height = h;
    vw->enc->time_base = (AVRational){1, fps};
    vw->enc->framerate = (AVRational){fps, 1};
    vw->enc->pix_fmt = AV_PIX_FMT_YUV420P;
    vw->enc->gop_size = 2 * fps;    /* a keyframe every 2 s: seeking for re-sampling stays cheap */
    vw->enc->thread_count = 1;      /* the same bytes on every machine: tests depend on it */
    if (codec->id == AV_CODEC_ID_MPEG4) vw->enc->bit_rate = (int64_t)w * h * fps / 8;
    else {
        char q[16];
        snprintf(q, sizeof q, "%d", crf);
        av_opt_set(vw->enc->priv_data, "preset", "veryfast", 0);
        av_opt_set(vw->enc->priv_data, "crf", q, 0);
    }
    if (vw->oc->oformat->flags & AVFMT_GLOBALHEADER) vw->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if ((r = avcodec_open2(vw->enc, codec, NULL)) < 0) {
        st = MI_FAIL(MI_ERR_UNSUPPORTED, "%s: cannot open the %s encoder: %s", path, codec->name, averr(r, eb, sizeof eb));
        goto fail;
    }
    vw->st = avformat_new_stream(vw->oc, NULL);
    if (!vw->st) { st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    avcodec_parameters_from_context(vw->st->codecpar, vw->enc);
    vw->st->time_base = vw->enc->time_base;
    if ((r = avio_open(&vw->oc->pb, path, AVIO_FLAG_WRITE)) < 0) {
        st = MI_FAIL(MI_ERR_IO, "%s: cannot create: %s", path, averr(r, eb, sizeof eb));
        goto fail;
    }
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "movflags", "+faststart", 0);  /* index first: a truncated copy still opens */
    r = avformat_write_header(vw->oc, &opts);
    av_dict_free(&opts);
    if (r < 0) { st = MI_FAIL(MI_ERR_IO, "%s: cannot write the header: %s", path, averr(r, eb, sizeof eb)); goto fail; }
    vw->frame->format = AV_PIX_FMT_YUV420P;
    vw->frame->width = w;
    vw->frame->height = h;
    if (av_frame_get_buffer(vw->frame, 0) < 0) { st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    vw->sws = sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, AV_PIX_FMT_YUV420P, SWS_BILINEAR, NULL, NULL, NULL);
    if (!vw->sws) { st = MI_FAIL(MI_ERR_UNSUPPORTED, "%s: no RGB to YUV conversion", path); goto fail; }
    *out = vw;
    return MI_OK;
fail:
    writer_free(vw);
    return st;
}

mi_status mi_video_writer_add(mi_video_writer *vw, const uint8_t *rgb) {
    char eb[128];
    int r = av_frame_make_writable(vw->frame);
    if (r < 0) return MI_FAIL(MI_ERR_NOMEM, "%s: out of memory", vw->path);
    const uint8_t *src[4] = { rgb, NULL, NULL, NULL };
    int src_stride[4] = { vw->w * 3, 0, 0, 0 };
    sws_scale(vw->sws, src, src_stride, 0, vw->h, vw->frame->data, vw->frame->linesize);
    vw->frame->pts = vw->n++;
    if ((r = avcodec_send_frame(vw->enc, vw->frame)) < 0)
        return MI_FAIL(MI_ERR_IO, "%s: encoder refused frame %lld: %s", vw->path, (long long)vw->n - 1,
                       averr(r, eb, sizeof eb));
    return drain(vw);
}

mi_status mi_video_writer_close(mi_video_writer *vw) {
    if (!vw) return MI_OK;
    char eb[128];
    mi_status st = MI_OK;
    avcodec_send_frame(vw->enc, NULL);
    st = drain(vw);
    int r = av_write_trailer(vw->oc);
    if (st == MI_OK && r < 0) st = MI_FAIL(MI_ERR_IO, "%s: cannot finish the file: %s", vw->path, averr(r, eb, sizeof eb));
    writer_free(vw);
    return st;
}

mi_status mi_rgb_resize(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh) {
    struct SwsContext *c = sws_getContext(sw, sh, AV_PIX_FMT_RGB24, dw, dh, AV_PIX_FMT_RGB24, SWS_AREA,
                                          NULL, NULL, NULL);
    uint8_t *tmp = malloc((size_t)dw * dh * 3 + 64);  /* swscale may write a little past a packed row */
    if (!c || !tmp) {
        sws_freeContext(c);
        free(tmp);
        return MI_FAIL(MI_ERR_ARG, "cannot resize RGB %dx%d to %dx%d", sw, sh, dw, dh);
    }
    const uint8_t *s[4] = { src, NULL, NULL, NULL };
    int ss[4] = { sw * 3, 0, 0, 0 };
    uint8_t *d[4] = { tmp, NULL, NULL, NULL };
    int ds[4] = { dw * 3, 0, 0, 0 };
    sws_scale(c, s, ss, 0, sh, d, ds);
    memcpy(dst, tmp, (size_t)dw * dh * 3);
    sws_freeContext(c);
    free(tmp);
    return MI_OK;
}
