/* pipelines/patho/patho.h - gastric biopsy slide classification: negative, low-grade or high-grade
 * intraepithelial neoplasia, or invasive carcinoma, and where the suspected lesion is.
 *
 *   slide (OpenSlide, or a PNG/JPEG) -> thumbnail -> Otsu tissue threshold -> grid of tiles at the
 *   model's microns per pixel -> tiles the thumbnail shows tissue in are read -> tissue ratio
 *   >= min -> stain normalization (Macenko, or Reinhard; a tile whose stains cannot be fitted is
 *   dropped) -> V-Net, batched -> per tile: lesion
 *   probability map, score S = sum of P(lesion) over its pixels, feature vector -> the K tiles
 *   of highest S -> graph: nodes in descending S, an edge where the similarity of two feature
 *   vectors passes the threshold -> GCN -> class probabilities.
 *
 * Memory does not grow with the slide beyond a few numbers per tile: tiles are streamed in
 * batches, only the K best feature vectors are kept, and the probability map is kept at thumbnail
 * resolution. docs/patho.md says the rest. */
#ifndef MI_PATHO_H
#define MI_PATHO_H

#include "medinfer.h"
#include "pipelines/io/image.h"
#include "weights/safetensors.h"

#include <stdbool.h>
#include <stdint.h>

#define MI_PATHO_MAX_CLASSES 16

typedef enum { MI_PATHO_STAIN_DEFAULT = -1, MI_PATHO_STAIN_NONE, MI_PATHO_STAIN_MACENKO,
               MI_PATHO_STAIN_REINHARD } mi_patho_stain;
typedef enum { MI_PATHO_OTSU_SLIDE, MI_PATHO_OTSU_TILE } mi_patho_otsu_scope;

/* Every field's zero (or negative) value means "the blobs' metadata, else the default". */
typedef struct {
    double mpp;               /* microns per pixel the V-Net works at; blob 'mpp' */
    double slide_mpp;         /* level-0 microns per pixel of a file that does not say (PNG/JPEG);
                                 0: assumed equal to mpp (and the report says so) */
    int    tile;              /* tile side in pixels at mpp; blob 'tile_size', else 512 */
    double tissue_ratio;      /* minimum share of tissue pixels in a tile; blob, else 0.70 */
    mi_patho_otsu_scope otsu;      /* where Otsu's threshold is computed: the thumbnail (default) or
                                 each tile */
    int    tissue_gray;       /* > 0: this grey level as the threshold instead of Otsu's */
    mi_patho_stain stain;     /* blob 'stain', else macenko */
    int    top_k;             /* GCN blob 'top_k', else 10 */
    const char *edge_metric;  /* "pearson" | "cosine"; GCN blob 'edge_metric', else pearson */
    const char *edge_compare; /* "ge" | "abs_ge"; GCN blob 'edge_compare', else ge */
    double edge_threshold;    /* NaN: GCN blob 'edge_threshold', else 0.5 */
    double lesion_threshold;  /* P(lesion) that outlines a region; 0: 0.5 */
    int    batch;             /* tiles per V-Net run, per thread; 0: 4 */
    int    threads;           /* 0: all cores; each takes whole tiles, with its own one-thread
                                 session; results are identical for any number */
    int    thumb_side;        /* thumbnail's longer side; 0: 2048 */
    void (*progress)(void *user, int64_t done, int64_t total);   /* tiles read so far, of total */
    void  *user;
} mi_patho_opts;

typedef struct {
    int64_t x, y;             /* level-0 top-left corner */
    int     col, row;         /* in the grid */
    double  score;            /* S: sum of P(lesion) over the tile's pixels inside the slide */
    double  p_mean;           /* S / those pixels */
    double  tissue;           /* tissue ratio */
    bool    edge;             /* the tile reaches past the slide (padded white) */
    int     tile_class;       /* argmax of the V-Net's tile head */
} mi_patho_tile;

typedef struct {
    /* the slide and how it was read */
    int64_t width, height;    /* level 0 */
    int     levels;
    double  slide_mpp;        /* level-0 microns per pixel used */
    const char *mpp_source;   /* "slide", "option" or "assumed" */
    char    vendor[32];
    double  ds;               /* level-0 pixels per analysed pixel */
    double  tile_l0;          /* a tile's side in level-0 pixels */
    int     cols, rows;
    int     otsu_threshold;   /* the thumbnail's (or the given grey level) */
    /* what happened to the tiles */
    int64_t tiles_total, tiles_skipped, tiles_read, tiles_kept, tiles_edge, stain_failed;
    mi_patho_tile *tiles;     /* every kept tile, in grid order */
    /* the answer */
    bool    classified;       /* false: no tile had enough tissue */
    int     nclasses, cls;
    const char *labels[MI_PATHO_MAX_CLASSES];
    float   probs[MI_PATHO_MAX_CLASSES], logits[MI_PATHO_MAX_CLASSES];
    mi_patho_tile *top;       /* the graph's nodes, descending S */
    int     ntop, edges;      /* nodes, undirected edges */
    /* pictures: the thumbnail and the lesion probability on its grid (NaN: not analysed) */
    mi_image thumb;
    float   *map;
    int      map_w, map_h;
    double   map_ds;          /* level-0 pixels per thumbnail pixel: pixel (i, j) starts at
                                 level-0 (i, j) * map_ds */
    double   seconds;
} mi_patho_result;

typedef struct mi_patho mi_patho;

/* Takes the V-Net model and the GCN blob over (also on failure; the caller has verified both).
 * Errors name the blob and what is wrong with it. */
mi_status mi_patho_open(mi_patho **p, mi_model *vnet, mi_weights *gcn, const mi_patho_opts *o);
void      mi_patho_close(mi_patho *p);
const mi_model   *mi_patho_vnet(const mi_patho *p);
const mi_weights *mi_patho_gcn(const mi_patho *p);
/* The settings in force (options over blob metadata over defaults), as a JSON object (cJSON *). */
struct cJSON *mi_patho_settings_json(const mi_patho *p);

/* One slide. Errors only for what could not run (an unreadable slide, memory); a slide without
 * tissue is a result (r->classified = false). Free r with mi_patho_result_free. */
mi_status mi_patho_run(mi_patho *p, const char *path, mi_patho_result *r);
void      mi_patho_result_free(mi_patho_result *r);

/* ---- outputs (report.c, heatmap.c) ---- */
/* The result's JSON object: slide, tiles, class and probabilities, the top-K tiles, the graph. */
struct cJSON *mi_patho_result_json(const mi_patho_result *r);
/* The thumbnail with the probability overlay, the top-K tiles and the class, as a PNG. */
mi_status mi_patho_heatmap(const char *png, const mi_patho_result *r, const char *title, const char *note);
/* The lesion regions (map >= the lesion threshold) as a QuPath GeoJSON file; *nregions gets how
 * many. */
mi_status mi_patho_geojson(const mi_patho *p, const char *path, const mi_patho_result *r, int *nregions);

#endif
