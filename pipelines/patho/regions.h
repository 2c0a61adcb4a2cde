/* pipelines/patho/regions.h - the suspected-lesion regions of a slide: the down-sampled lesion
 * probability map, thresholded, traced into polygons (outer ring and holes, along pixel edges), and
 * written as GeoJSON that QuPath imports as annotations. */
#ifndef MI_PATHO_REGIONS_H
#define MI_PATHO_REGIONS_H

#include "medinfer.h"

#include <stdint.h>

struct cJSON;

/* One ring: n vertices (x, y) in map-pixel corner coordinates, closed implicitly (the last vertex
 * joins the first); only corners are kept (no two consecutive edges go the same way). */
typedef struct {
    int32_t *xy;       /* 2n numbers */
    int      n;
} mi_ring;

/* One region: a 4-connected component of map pixels with p >= threshold; its outer ring, then
 * its holes (background enclosed by it). */
typedef struct {
    mi_ring *rings;    /* rings[0] is the outer one */
    int      nrings;
    int64_t  pixels;   /* map pixels in the region */
    double   p_mean, p_max;
} mi_region;

/* The regions of the w x h map (row-major) whose pixels have map[i] >= threshold, in the order of
 * their first pixel (row-major). A NaN pixel (not analysed) is background. At most max_regions
 * are kept (the largest ones, ties by that order); *nregions is how many are returned and
 * *dropped how many were left out. The outlines run along pixel edges: the outer ring clockwise
 * on the screen (y down), holes anticlockwise; a pixel touching another only at a corner is a
 * separate region. Free with mi_regions_free. */
mi_status mi_regions_trace(const float *map, int w, int h, float threshold, int max_regions,
                           mi_region **regions, int *nregions, int *dropped);
void      mi_regions_free(mi_region *regions, int n);

/* A GeoJSON FeatureCollection of the regions as QuPath reads annotations: one Polygon Feature per
 * region, its coordinates in level-0 pixels (map pixel corner (x, y) -> (x * ds_x, y * ds_y),
 * clipped to [0, width] x [0, height]), properties objectType "annotation", classification
 * { name, color }, and measurements (area in level-0 pixels and, when mpp > 0, in um^2; mean and
 * max lesion probability). */
struct cJSON *mi_regions_geojson(const mi_region *regions, int n, double ds_x, double ds_y,
                                 int64_t width, int64_t height, double mpp, const char *class_name,
                                 const uint8_t color[3]);

#endif
