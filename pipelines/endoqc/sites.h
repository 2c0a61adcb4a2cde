/* pipelines/endoqc/sites.h - the 26 sites of the upper-GI photo-documentation guideline, in the
 * preset order the published blind-spot monitors use. The pipeline itself takes labels,
 * order and groups from the blob's metadata; this list is what the synthetic renderer draws and
 * what the demo blob's metadata was written from. */
#ifndef MI_ENDOQC_SITES_H
#define MI_ENDOQC_SITES_H

#define MI_ENDOQC_NSITES 26

/* snake_case, stable: they are JSON values and SQL column contents */
extern const char *const mi_endoqc_site_names[MI_ENDOQC_NSITES];

#endif
