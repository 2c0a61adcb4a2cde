/* pipelines/io/video.h - video in and out through FFmpeg (libavformat/libavcodec/libswscale).
 *
 * Reading streams: one frame at a time, converted to RGB8 at a size the caller picks, with its
 * capture time in milliseconds taken from the stream's timestamps (not from the frame index, so
 * variable-frame-rate recordings and dropped frames keep their true times). Memory is one
 * decoded frame plus the decoder's own reference frames, whatever the video's length.
 *
 * A truncated or partly corrupt file is read as far as it decodes: packets the decoder rejects
 * are counted and skipped, frames it outputs with concealed errors are counted, a read error ends
 * the stream early, the last frame's time is compared with the duration the container states (its
 * frame count included), and mi_video_damage() says what happened and up to which time. Note that an MP4 whose index ("moov") is
 * at the end of the file cannot be opened at all once truncated; MKV, AVI and "faststart" MP4
 * (the index first, as our writer makes them) still open and decode up to the cut. */
#ifndef MI_IO_VIDEO_H
#define MI_IO_VIDEO_H

#include "medinfer.h"

#include <stdbool.h>

typedef struct mi_video mi_video;

typedef struct {
    char    container[32];  /* "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi" */
    char    codec[32];      /* "h264", "hevc", "mjpeg", ... */
    int     width, height;  /* coded size of the first frame's stream parameters */
    int     out_w, out_h;   /* size of the RGB frames mi_video_read() returns */
    double  fps;            /* average frame rate; 0 when the container does not say */
    int64_t duration_ms;    /* container's stated duration (the larger of its duration and its
                               frame count / fps); -1 when unknown */
} mi_video_info;

typedef struct {
    const uint8_t *px;      /* RGB8, out_w*out_h*3 bytes, row-major; valid until the next read */
    int      w, h;
    int64_t  t_ms;          /* capture time: presentation timestamp minus the stream start, in ms */
    int64_t  pts;           /* raw timestamp in stream time base: identifies the frame on a re-read */
    int64_t  index;         /* 0-based count of frames returned since open (not reset by seek) */
} mi_video_frame;

/* Says why path cannot be a video file before FFmpeg is asked (whose "Invalid data found when
 * processing input" would not): no such file, a directory, an empty file, unreadable. URLs,
 * devices and pipes are left to FFmpeg. mi_video_open calls it first. */
mi_status mi_video_check_path(const char *path);

/* Opens path and its best video stream. Frames are scaled (area averaging) so that their shorter
 * side is short_side pixels, keeping the display aspect ratio; short_side <= 0 keeps the coded
 * size. Errors name the file. */
mi_status mi_video_open(mi_video **out, const char *path, int short_side);
/* The same for any source a terminal reads: a file, a numbered image sequence ("dir/%04d.png",
 * played at fps, 25 when fps <= 0), a V4L2 capture device ("/dev/videoN", asked for fps when > 0)
 * or a network URL FFmpeg opens (rtsp://, http://, udp://, ...). */
mi_status mi_video_open_source(mi_video **out, const char *path, int short_side, double fps);
void      mi_video_close(mi_video *v);
const mi_video_info *mi_video_get_info(const mi_video *v);

/* Next frame in presentation order. *got = false at the end of the usable stream (then check
 * mi_video_damage()). Returns an error only for what makes going on impossible (out of memory);
 * damage inside the file ends the stream or is skipped, and is recorded. */
mi_status mi_video_read(mi_video *v, mi_video_frame *f, bool *got);

/* Repositions at the last keyframe at or before t_ms (then read forward and skip frames before
 * the wanted time). Used by a second pass over a time window. */
mi_status mi_video_seek_ms(mi_video *v, int64_t t_ms);

/* "" when everything read so far decoded cleanly; else what went wrong and where, truncation
 * first, then frames decoded with concealed errors, then the first damaged or rejected packet. */
const char *mi_video_damage(const mi_video *v);
int64_t     mi_video_bad_packets(const mi_video *v);  /* packets marked corrupt or rejected by the decoder */
int64_t     mi_video_damaged_frames(const mi_video *v); /* frames output with errors concealed */
int64_t     mi_video_last_ms(const mi_video *v);      /* time of the last frame returned; -1 none */
bool        mi_video_truncated(const mi_video *v);    /* ended well before the stated duration */

/* Writing (synthetic data, demo videos): constant frame rate, RGB8 frames in, H.264 (libx264)
 * in MP4 with the index at the front, or MPEG-4 part 2 when libx264 is missing. crf: x264
 * quality (18 good, 28 small); ignored by MPEG-4. */
typedef struct mi_video_writer mi_video_writer;
mi_status mi_video_writer_open(mi_video_writer **out, const char *path, int w, int h, int fps, int crf);
mi_status mi_video_writer_add(mi_video_writer *vw, const uint8_t *rgb);  /* w*h*3 bytes */
/* Flushes the encoder and writes the trailer; frees vw even on error. */
mi_status mi_video_writer_close(mi_video_writer *vw);

/* RGB8 resize with area averaging (libswscale), dst and src tightly packed. */
mi_status mi_rgb_resize(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh);

#endif
