/* pipelines/endoqc/sites.h - the 26 sites of the upper-GI photo-documentation guideline, in the
 * preset order the published blind-spot monitors use. The pipeline itself takes labels,
 * order and groups from the blob's metadata; this list is what the synthetic renderer draws and
 * what the demo blob's metadata was written from. */
#ifndef MI_ENDOQC_SITES_H
#define MI_ENDOQC_SITES_H

#define MI_ENDOQC_NSITES 26

/* snake_case, stable: they are JSON values and SQL column contents */
extern const char *const mi_endoqc_site_names[MI_ENDOQC_NSITES];

/* The standard re-sampling groups of this order: the blind spots the guideline's targeted
 * re-sampling looks for again (the four fundus and the four antrum sites). A blob without
 * site_groups gets each group whose labels it has. */
#define MI_ENDOQC_NSTD_GROUPS 2
typedef struct {
    const char *name;
    const char *const members[4];
} mi_endoqc_std_group;
extern const mi_endoqc_std_group mi_endoqc_std_groups[MI_ENDOQC_NSTD_GROUPS];

#endif
