/* pipelines/trust/buildinfo.c - the git hash of the build, recorded in every audit row. Only this
 * file carries -DMI_GIT_HASH (Makefile), so a new commit recompiles one small file. */
#include "pipelines/trust/trust.h"

#ifndef MI_GIT_HASH
#define MI_GIT_HASH "unknown"
#endif

const char *mi_build_git(void) { return MI_GIT_HASH; }
