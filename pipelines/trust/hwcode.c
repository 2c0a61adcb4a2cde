/* pipelines/trust/hwcode.c - the hardware code: a short, stable fingerprint of this machine that
 * an update manifest lists to authorize it (docs/trust.md, "Hardware code").
 *
 * Inputs are chosen to survive reboots, kernel and medinfer upgrades, network changes and
 * container restarts (no MAC addresses, no CPU counts, no hostname): the OS installation's
 * machine-id and the CPU model. It identifies, it does not authenticate: anyone with a shell on
 * the machine can read it, so it scopes a rollout, and the signature is what protects it. */
#include "pipelines/trust/trust.h"
#include "pipelines/trust/trust_internal.h"
#include "weights/sha256.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static void trim(char *s) {
    size_t n = strlen(s), a = 0;
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    while (s[a] && isspace((unsigned char)s[a])) a++;
    memmove(s, s + a, n - a + 1);
}

static void cpu_identity(char *out, size_t cap) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a = 0, b = 0, c = 0, d = 0, regs[12] = { 0 };
    char vendor[13] = { 0 }, brand[49] = { 0 };
    __get_cpuid(0, &a, &b, &c, &d);
    memcpy(vendor, &b, 4); memcpy(vendor + 4, &d, 4); memcpy(vendor + 8, &c, 4);
    unsigned sig = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) sig = a;  /* family, model, stepping */
    if ((unsigned)__get_cpuid_max(0x80000000, NULL) >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
        memcpy(brand, regs, 48);
    }
    trim(brand);
    snprintf(out, cap, "x86 %s %08x %s", vendor, sig, brand);
#elif defined(__aarch64__)
    char midr[64] = "";
    if (mi_trust_read_small("/sys/devices/system/cpu/cpu0/regs/identification/midr_el1", midr, sizeof midr,
                            "MIDR") != MI_OK)
        midr[0] = 0;
    trim(midr);
    snprintf(out, cap, "aarch64 %s", midr[0] ? midr : "unknown-midr");
#else
    snprintf(out, cap, "unknown-cpu");
#endif
}

mi_status mi_hwcode_inputs(char *machine_id, size_t mcap, char *cpu_id, size_t ccap) {
    static const char *paths[] = { "/etc/machine-id", "/var/lib/dbus/machine-id" };
    char buf[256];
    mi_status st = MI_ERR_IO;
    for (int i = 0; i < 2 && st; i++) {
        st = mi_trust_read_small(paths[i], buf, sizeof buf, "machine id");
        if (st == MI_OK) {
            trim(buf);
            if (!buf[0]) st = MI_ERR_FORMAT;
        }
    }
    if (st)
        return MI_FAIL(MI_ERR_IO, "cannot compute the hardware code: neither /etc/machine-id nor "
                       "/var/lib/dbus/machine-id is readable and non-empty (systemd-machine-id-setup creates it)");
    snprintf(machine_id, mcap, "%s", buf);
    cpu_identity(cpu_id, ccap);
    return MI_OK;
}

mi_status mi_hwcode(char code[20]) {
    char mid[256], cpu[160], text[512], hex[65];
    mi_status st = mi_hwcode_inputs(mid, sizeof mid, cpu, sizeof cpu);
    if (st) return st;
    int n = snprintf(text, sizeof text, "medinfer-hwcode-v1\n%s\n%s\n", mid, cpu);
    mi_sha256_hex(text, (size_t)n, hex);
    for (int g = 0, o = 0; g < 4; g++) {
        for (int k = 0; k < 4; k++) code[o++] = (char)toupper((unsigned char)hex[4 * g + k]);
        code[o++] = g < 3 ? '-' : 0;
    }
    return MI_OK;
}

bool mi_hwcode_equal(const char *a, const char *b) {
    for (;;) {
        while (*a == '-') a++;
        while (*b == '-') b++;
        if (!*a || !*b) return !*a && !*b;
        if (toupper((unsigned char)*a) != toupper((unsigned char)*b)) return false;
        a++, b++;
    }
}
