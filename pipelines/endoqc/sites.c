/* pipelines/endoqc/sites.c - see sites.h */
#include "pipelines/endoqc/sites.h"

const char *const mi_endoqc_site_names[MI_ENDOQC_NSITES] = {
    "oesophagus", "cardia_scj",                                          /*  1- 2 */
    "antrum_gc", "antrum_pw", "antrum_aw", "antrum_lc",                  /*  3- 6 */
    "duodenal_bulb", "descending_duodenum",                              /*  7- 8 */
    "lower_body_gc", "lower_body_pw", "lower_body_aw", "lower_body_lc",  /*  9-12 */
    "mid_upper_body_gc", "mid_upper_body_pw", "mid_upper_body_aw", "mid_upper_body_lc",  /* 13-16 */
    "fundus_gc", "fundus_pw", "fundus_aw", "fundus_lc",                  /* 17-20 */
    "angle_pw", "angle_aw", "angle_lc",                                  /* 21-23 */
    "retroflex_mid_upper_body_pw", "retroflex_mid_upper_body_aw",        /* 24-26 */
    "retroflex_mid_upper_body_lc",
};

const mi_endoqc_std_group mi_endoqc_std_groups[MI_ENDOQC_NSTD_GROUPS] = {
    { "fundus", { "fundus_gc", "fundus_pw", "fundus_aw", "fundus_lc" } },
    { "antrum", { "antrum_gc", "antrum_pw", "antrum_aw", "antrum_lc" } },
};
