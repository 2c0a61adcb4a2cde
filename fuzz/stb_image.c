/* fuzz/stb_image.c - stb_image compiled into the libFuzzer build only, from the same Debian header
 * that libstb.so is built from, so that its decoders carry coverage instrumentation and guide
 * fuzz_image towards images that decode (with sizes that exercise the preprocessing). The
 * executable's definitions take precedence over libstb.so's; the normal build uses libstb.so. */
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
