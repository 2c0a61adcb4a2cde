# medinfer - build, test, bench, demo, sanitizers, fuzzing.  `make help` lists the targets.
#
# The engine core (ops/ nn/ weights/) links libc, libm, OpenMP and cJSON only; pipelines and the
# CLI add FFmpeg, stb_image, SQLite, libsodium, libcurl, DCMTK, OpenSlide, libtiff, libmicrohttpd. Sources are found by wildcard, so a
# new file in a listed folder needs no Makefile change.

CC      ?= cc
PYTHON  := /usr/bin/python3
# One job per CPU unless the command line says otherwise (make -j1): on a fresh 2-core clone the
# builds and the PyTorch fixtures before `make test`'s suite took 96 s instead of 177. Recipes that
# run tests are single commands, so the tests themselves still run one after another.
ifeq (,$(filter -j%,$(MAKEFLAGS)))
MAKEFLAGS += -j$(shell nproc)
endif
# Cross-build (docs/arm.md): `make CROSS=aarch64-linux-gnu` builds the engine core and the unit
# tests that need only the core into build-aarch64/, with Debian's cross compiler and the arm64
# cJSON and Check that tools/install-deps.sh unpacks into build-aarch64/sysroot. `make test-arm`
# runs them under qemu-user. Pipelines and the CLI are not cross-built.
CROSS   ?=
ifneq ($(CROSS),)
CC      := $(CROSS)-gcc
AR      := $(CROSS)-ar
B       ?= build-$(firstword $(subst -, ,$(CROSS)))
endif
B       ?= build
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
# Includes are spelled from the repository root ("ops/conv.h", "pipelines/io/image.h"), the public
# header as "medinfer.h". -fPIC and hidden visibility: the same objects make the static library, the shared one (which
# exports only what include/medinfer.h declares, marked MI_API) and the programs.
CFLAGS  += -std=c11 -D_GNU_SOURCE -fno-fast-math -ffp-contract=off -fopenmp -Wall -Wextra -Werror \
           -fPIC -fvisibility=hidden -I. -Iinclude -MMD -MP
LDLIBS_CORE := -lcjson -lm -fopenmp
# The one C++ file, pipelines/io/dicom.cc (DCMTK is C++; its C header keeps that inside). Same
# warnings and visibility as the C. Debian's dcmtk.pc requires packages DCMTK does not need to
# decode (sndfile, ...), so its libraries are named here: the shared ones bring their own
# dependencies (ijg8/12/16, charls, zlib). Programs that link the pipelines link with $(CXX).
CXXFLAGS ?= $(OPT) -g
CXXFLAGS += -std=c++17 -D_GNU_SOURCE -fno-fast-math -ffp-contract=off -Wall -Wextra -Werror \
            -fPIC -fvisibility=hidden -I. -Iinclude -MMD -MP
DCMTK_LIBS  := -ldcmjpls -ldcmjpeg -ldcmimage -ldcmimgle -ldcmdata -loflog -lofstd
PIPE_PKGS   := libavformat libavdevice libavcodec libswscale libavutil libmicrohttpd sqlite3 libsodium libcurl stb openslide libtiff-4
# pkg-config is asked only when a target needs the pipelines (after deps are installed)
PIPE_CFLAGS  = $(shell pkg-config --cflags $(PIPE_PKGS) 2>/dev/null)
PIPE_LIBS    = $(shell pkg-config --libs $(PIPE_PKGS) 2>/dev/null) $(DCMTK_LIBS)
CHECK_LIBS   = $(shell pkg-config --libs check 2>/dev/null)
ifneq ($(CROSS),)
# The target's libraries live in the sysroot only: the host's pkg-config knows nothing of them.
# Test programs find libcjson.so.1 there at run time by their rpath (qemu -L serves libc, libgomp).
SYSROOT      := $(abspath $(B)/sysroot)
SYSLIB       := $(SYSROOT)/usr/lib/$(CROSS)
CFLAGS       += -isystem $(SYSROOT)/usr/include
LDLIBS_CORE  := -L$(SYSLIB) -lcjson -lm -fopenmp
PIPE_CFLAGS  :=
PIPE_LIBS    :=
CHECK_LIBS   := -Wl,-rpath,$(SYSLIB) -lcheck_pic -l:libsubunit.a -lrt -lm
endif

CORE_SRC := $(wildcard ops/*.c nn/*.c weights/*.c)
X86_SRC  := $(wildcard ops/x86/*.c)
ARM_SRC  := $(wildcard ops/arm/*.c)
ARCH     := $(shell $(CC) -dumpmachine 2>/dev/null)
ifneq (,$(findstring x86_64,$(ARCH)))
CORE_SRC += $(X86_SRC)
endif
ifneq (,$(findstring aarch64,$(ARCH)))
CORE_SRC += $(ARM_SRC)
endif
PIPE_SRC := $(wildcard pipelines/*/*.c)
PIPE_CXX_SRC := $(wildcard pipelines/*/*.cc)
CLI_SRC  := $(wildcard tools/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
# The unit tests that need only the engine core (no pipeline header or library): what `make
# test-arm` cross-builds and runs under qemu, and the fixtures they read. The longest goes first:
# tests/run_qemu.sh gives it the second CPU (under qemu here test_conv took 250 s, the rest 216 in
# turn on the first; with test_resnet first, 117 s against 349 for the rest).
CORE_TESTS := conv resnet exact ops ops2 layers session detect bad_blobs
CORE_TEST_BIN = $(CORE_TESTS:%=$(B)/tests/test_%)
CORE_FIXTURES := conv ops ops2 layers resnet detect bad_blobs weights lesionseg
TEST_SUPPORT := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))

CORE_OBJ := $(CORE_SRC:%.c=$(B)/%.o)
PIPE_OBJ := $(PIPE_SRC:%.c=$(B)/%.o) $(PIPE_CXX_SRC:%.cc=$(B)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(B)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(B)/tests/%)
TEST_SUPPORT_OBJ := $(TEST_SUPPORT:%.c=$(B)/%.o)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(B)/fuzz/%)

# SIMD files are compiled for their ISA and only ever called after the run-time CPU check.
$(B)/ops/x86/%_avx2.o:   XFLAGS = -mavx2 -mfma
$(B)/ops/x86/%_avx512.o: XFLAGS = -mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma

DEPS_STAMP := $(B)/.deps-build
TDEPS_STAMP := $(B)/.deps-test
FDEPS_STAMP := $(B)/.deps-fuzz

.SECONDARY:
.PHONY: static all test test-arm check fuzz bench demo clean deps help install
ifeq ($(CROSS),)
all: $(B)/medinfer $(B)/libmedinfer.so
else
all: $(B)/libmedinfer.a $(B)/libmedinfer.so $(CORE_TEST_BIN)
endif

help:
	@echo "make [all]   build $(B)/medinfer (installs missing Debian build deps)"
	@echo "make test    unit + parity + end-to-end tests (installs PyTorch for references)"
	@echo "make check   ASan+UBSan build running the unit tests"
	@echo "make test-arm  the core and its unit tests cross-built for aarch64, run under qemu-user"
	@echo "make static    a fully static medinfer (classify, inspect, audit) in build-static/; docs/arm.md"
	@echo "make CROSS=aarch64-linux-gnu   the core and its unit tests for aarch64, in build-aarch64/"
	@echo "make fuzz    libFuzzer on every parser of outside bytes, FUZZ_SECONDS=$(FUZZ_SECONDS) each"
	@echo "make bench   medinfer vs PyTorch and ONNX Runtime, same machine, same run"
	@echo "make demo    endoscopy QC, M-mode echo, gastric slides and lesion segmentation on shipped demo data"
	@echo "make install PREFIX=DIR   library (static + shared), medinfer.h, medinfer.pc, the CLI"

$(DEPS_STAMP):
	@mkdir -p $(B)
	sh tools/install-deps.sh $(if $(CROSS),arm $(B)/sysroot,build)
	@touch $@
$(TDEPS_STAMP): $(DEPS_STAMP)
	sh tools/install-deps.sh test
	@touch $@
$(FDEPS_STAMP): $(DEPS_STAMP)
	sh tools/install-deps.sh fuzz
	@touch $@
deps: $(TDEPS_STAMP)

$(B)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XFLAGS) -c $< -o $@
$(B)/pipelines/%.o: pipelines/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PIPE_CFLAGS) -c $< -o $@
$(B)/pipelines/%.o: pipelines/%.cc | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@
$(B)/tools/%.o: tools/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PIPE_CFLAGS) -c $< -o $@
$(B)/fuzz/%.o: fuzz/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PIPE_CFLAGS) -c $< -o $@
# stb_image as Debian ships it (fuzz/stb_image.c, fuzz build only), under ASan and UBSan's
# array-bounds checks, which catch its overruns. The rest of UBSan is off there: stb 2.27 is
# full of arithmetic UB on corrupt data that 2.28 turned into refusals (shifts by 32 and signed
# overflows in the JPEG entropy decoder, NULL + 0 and memcpy(NULL, p, 0) for an empty first
# IDAT); they wrap into garbage pixels of an already corrupt image without touching memory, and
# only decoding the data ourselves could keep it from stb. Our own code keeps every check.
$(B)/fuzz/stb_image.o: CFLAGS += -w -fno-sanitize=undefined -fsanitize=bounds
# FUZZ_KERNEL_CFLAGS: what `make fuzz` takes out of the AVX-512 GEMM kernels' checks (empty
# otherwise; see the fuzz target).
$(B)/ops/x86/conv_avx512.o: CFLAGS += $(FUZZ_KERNEL_CFLAGS)
$(B)/tests/%.o: tests/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PIPE_CFLAGS) -DMI_FIXTURES='"$(B)/fixtures"' -c $< -o $@

# The build's git hash in audit rows: only buildinfo.o carries it, and it is recompiled when the
# hash (or the working tree's -dirty mark) changes.
GIT_HASH := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD -- 2>/dev/null; [ $$? -eq 1 ] && echo -dirty)
$(shell mkdir -p $(B) && echo '$(GIT_HASH)' | cmp -s - $(B)/.git-hash || echo '$(GIT_HASH)' > $(B)/.git-hash)
$(B)/pipelines/trust/buildinfo.o: $(B)/.git-hash
$(B)/pipelines/trust/buildinfo.o: CFLAGS += -DMI_GIT_HASH='"$(GIT_HASH)"'

# archives are rebuilt whole, so an object whose source was moved or deleted cannot linger
$(B)/libmedinfer.a: $(CORE_OBJ)
	rm -f $@ && $(AR) rcs $@ $^
$(B)/libmedinfer.so: $(CORE_OBJ)
	$(CC) $(CFLAGS) -shared -Wl,-soname,libmedinfer.so.0 -o $@ $^ $(LDLIBS_CORE)

$(B)/libmedinfer_pipelines.a: $(PIPE_OBJ)
	rm -f $@ && $(AR) rcs $@ $^

$(B)/medinfer: $(CLI_OBJ) $(B)/libmedinfer_pipelines.a $(B)/libmedinfer.a
	$(CXX) $(CFLAGS) -o $@ $(CLI_OBJ) $(B)/libmedinfer_pipelines.a $(B)/libmedinfer.a $(PIPE_LIBS) $(LDLIBS_CORE)

ifeq ($(CROSS),)
$(B)/tests/%: $(B)/tests/%.o $(TEST_SUPPORT_OBJ) $(B)/libmedinfer_pipelines.a $(B)/libmedinfer.a
	$(CXX) $(CFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(B)/libmedinfer_pipelines.a $(B)/libmedinfer.a \
	    $(PIPE_LIBS) $(CHECK_LIBS) $(LDLIBS_CORE)
else
$(B)/tests/%: $(B)/tests/%.o $(TEST_SUPPORT_OBJ) $(B)/libmedinfer.a
	$(CC) $(CFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(B)/libmedinfer.a $(CHECK_LIBS) $(LDLIBS_CORE)
endif

# make install PREFIX=DIR: what an integrator needs (include/medinfer.h is the only header) and
# the CLI. medinfer.pc carries an rpath, so a program linked against a private prefix runs as is.
PREFIX ?= /usr/local
install: $(B)/medinfer $(B)/libmedinfer.a $(B)/libmedinfer.so
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/medinfer.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(B)/libmedinfer.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/libmedinfer.so $(DESTDIR)$(PREFIX)/lib/libmedinfer.so.0
	ln -sf libmedinfer.so.0 $(DESTDIR)$(PREFIX)/lib/libmedinfer.so
	install -m 755 $(B)/medinfer $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/^#define MI_VERSION "\(.*\)"/\1/p' include/medinfer.h)|' \
	    tools/medinfer.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/medinfer.pc

# examples/embed.c built the way an integrator builds it: against an installed tree, through
# pkg-config only (tests/test_embed.sh runs it beside `medinfer classify`).
$(B)/embed: examples/embed.c $(B)/medinfer $(B)/libmedinfer.a $(B)/libmedinfer.so tools/medinfer.pc.in
	rm -rf $(B)/stage
	$(MAKE) --no-print-directory install PREFIX=$(abspath $(B)/stage) B=$(B) >/dev/null
	PKG_CONFIG_PATH=$(abspath $(B)/stage)/lib/pkgconfig $(CC) -O2 -Wall -Wextra -Werror -o $@ examples/embed.c \
	    $$(PKG_CONFIG_PATH=$(abspath $(B)/stage)/lib/pkgconfig pkg-config --cflags --libs medinfer stb)

# Python references (PyTorch) write fixtures once per change of the script.
FIXTURE_STAMPS := $(patsubst tests/ref_%.py,$(B)/fixtures/%.stamp,$(wildcard tests/ref_*.py))
$(B)/fixtures/%.stamp: tests/ref_%.py tests/mi_ref.py $(wildcard tools/*.py) | $(TDEPS_STAMP)
	@mkdir -p $(B)/fixtures
	$(PYTHON) $< $(B)/fixtures
	@touch $@
# references computed from a shipped blob are written again when the blob changes
$(B)/fixtures/assist_det.stamp: weights/assist_det_demo.safetensors

# Fuzz harnesses (fuzz/fuzz_*.c, one LLVMFuzzerTestOneInput each). Here they are linked with
# fuzz/replay.c, which runs the files or directories it is given once: `make test` (and, with the
# sanitizers, `make check`) replays each committed corpus fuzz/corpus/NAME/ through
# $(B)/fuzz/fuzz_NAME (tests/test_fuzz_replay.sh), no clang needed. `make fuzz` links the same
# harnesses with libFuzzer instead, and with an instrumented stb_image (fuzz/stb_image.c).
FUZZ_LINK ?= $(B)/fuzz/replay.o
$(FUZZ_BIN): $(B)/fuzz/%: $(B)/fuzz/%.o $(FUZZ_LINK) $(B)/libmedinfer_pipelines.a $(B)/libmedinfer.a
	$(CXX) $(CFLAGS) $(FUZZ_LDFLAGS) -o $@ $< $(FUZZ_LINK) $(B)/libmedinfer_pipelines.a $(B)/libmedinfer.a \
	    $(PIPE_LIBS) $(LDLIBS_CORE)

test: $(TDEPS_STAMP) $(B)/medinfer $(TEST_BIN) $(FUZZ_BIN) $(FIXTURE_STAMPS) $(B)/embed
	MI_BIN=$(B)/medinfer MI_EMBED=$(B)/embed MI_LIB=$(B)/libmedinfer.so MI_FIXTURES=$(B)/fixtures PYTHON=$(PYTHON) \
	    sh tests/run.sh $(B)/tests

# The core and its unit tests for aarch64 (build-aarch64/), run under qemu-user against the
# fixtures the native build's PyTorch references wrote (tests/run_qemu.sh says how: one
# OpenMP thread, and why). docs/arm.md.
ARM_B := build-aarch64
# MI_EXACT: the x86 run of tests/test_exact.c writes its output bits, the aarch64 run compares.
EXACT_BITS := $(abspath $(B)/fixtures/exact_bits.bin)
test-arm: $(CORE_FIXTURES:%=$(B)/fixtures/%.stamp) $(B)/tests/test_exact
	rm -f $(EXACT_BITS)
	MI_FIXTURES=$(abspath $(B)/fixtures) MI_EXACT_BITS=$(EXACT_BITS) $(B)/tests/test_exact | grep '^exact'
	@# the cross compiler first, in a make of its own: the one that builds asks it for the target
	@# (ARCH, when it reads this file) to pick the aarch64 kernels
	$(MAKE) --no-print-directory CROSS=aarch64-linux-gnu B=$(ARM_B) $(ARM_B)/.deps-build
	$(MAKE) --no-print-directory CROSS=aarch64-linux-gnu B=$(ARM_B) all
	MI_FIXTURES=$(abspath $(B)/fixtures) MI_EXACT_BITS=$(EXACT_BITS) sh tests/run_qemu.sh $(ARM_B)/tests $(CORE_TESTS)

# A fully static `medinfer` (docs/arm.md): the engine core and the commands whose libraries Debian
# ships as static archives - classify, inspect, audit (stb_image, SQLite, libsodium, libgomp). The
# video, slide, DICOM and model-update commands need FFmpeg, OpenSlide, DCMTK and libcurl, which
# Debian does not support linking statically. cJSON, a shared library only in Debian, is compiled
# from its Debian source package (tools/install-deps.sh static).
ST := build-static
STATIC_CMDS := classify inspect audit
ifeq ($(B),$(ST))
CFLAGS  += -DMI_STATIC_CLI
CLI_SRC := tools/medinfer.c tools/cli.c $(STATIC_CMDS:%=tools/cmd_%.c)
CLI_OBJ := $(CLI_SRC:%.c=$(B)/%.o)
endif
STATIC_CHECK := weights/endoqc_sites_demo.safetensors --logits examples/echo/echo_s3_00005.png
static: $(B)/medinfer
	sh tools/install-deps.sh static $(ST)/src
	$(MAKE) --no-print-directory B=$(ST) $(ST)/medinfer.static
	@cp $(ST)/medinfer.static $(ST)/medinfer && strip $(ST)/medinfer
	@echo "static: $(ST)/medinfer, $$(du -k $(ST)/medinfer | cut -f1) KiB stripped ($(STATIC_CMDS))," \
	    "engine core $$(size -t $(ST)/libmedinfer.a | tail -n 1 | awk '{print int(($$1 + $$2) / 1024)}') KiB of code and data"
	@ldd $(ST)/medinfer 2>&1 | sed 's/^/static: ldd: /'
	@# the same classification, to the last digit, as the dynamic build's
	$(ST)/medinfer classify --model $(STATIC_CHECK) > $(ST)/classify.json
	$(B)/medinfer classify --model $(STATIC_CHECK) | cmp - $(ST)/classify.json
	@echo "static: classify gives the dynamic build's output byte for byte"
# cJSON's own file with its own warnings, not the project's -Werror set
$(ST)/cJSON.o: $(ST)/src/cjson/.done
	$(CC) $(OPT) -fPIC -c $(ST)/src/cjson/cJSON.c -o $@
$(ST)/medinfer.static: $(CLI_OBJ) $(B)/libmedinfer_pipelines.a $(B)/libmedinfer.a $(ST)/cJSON.o
	$(CC) $(CFLAGS) -static -o $@ $(CLI_OBJ) $(B)/libmedinfer_pipelines.a $(B)/libmedinfer.a $(ST)/cJSON.o \
	    -lstb -lsqlite3 -lsodium -lm -fopenmp -lpthread

# Sanitizers: separate trees, unit tests only (the parity fixtures are shared with `make test`).
# ASan + UBSan over every test (with float-cast-overflow, which GCC's -fsanitize=undefined leaves
# out and clang's, in the fuzz build, includes: a huge JSON number cast to int); ThreadSanitizer
# over sessions sharing a model across host threads (tests/test_session.c; libgomp's own
# synchronization is invisible to TSan, so that build gives each session one OpenMP thread) and
# over endoqc's decoder thread and its queue (tests/test_endoqc.c).
# tests/test_embed.sh compares the native $(B)/embed, built from the installed tree, with the
# sanitized medinfer: it is built first, so that `make check` on a clean tree needs no `make test`.
check: $(TDEPS_STAMP) $(FIXTURE_STAMPS) $(B)/embed
	@mkdir -p build-san build-tsan && touch build-san/.deps-build build-san/.deps-test build-tsan/.deps-build build-tsan/.deps-test
	$(MAKE) B=build-san OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow \
	    -fno-sanitize-recover=undefined,float-cast-overflow" build-san/medinfer $(patsubst $(B)/%,build-san/%,$(TEST_BIN) $(FUZZ_BIN))
	$(MAKE) B=build-tsan OPT="-O1 -g -fsanitize=thread -DMI_TSAN" build-tsan/tests/test_session build-tsan/tests/test_endoqc
	CK_FORK=no TSAN_OPTIONS=halt_on_error=1 MI_FIXTURES=$(B)/fixtures build-tsan/tests/test_session
	CK_FORK=no TSAN_OPTIONS=halt_on_error=1 MI_FIXTURES=$(B)/fixtures build-tsan/tests/test_endoqc
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 MI_SANITIZE=1 MI_BIN=build-san/medinfer \
	    MI_FIXTURES=$(B)/fixtures PYTHON=$(PYTHON) sh tests/run.sh build-san/tests

# libFuzzer: the harnesses built by clang with coverage, ASan and UBSan in build-fuzz/, each run
# for FUZZ_SECONDS on its corpus, one per core at a time (fuzz/run.sh; FUZZ_JOBS=1 runs them one
# after the other; new inputs go to build-fuzz/fuzz-corpus/, crashes
# to build-fuzz/findings/, never into the committed fuzz/corpus/). FUZZ_ARGS adds libFuzzer
# options, e.g. FUZZ_ARGS="-seed=1 -runs=1000000"; FUZZ_ONLY="dicom image" runs only those harnesses.
# UBSan's pointer-overflow check is left out of ops/x86/conv_avx512.c there: on its always-inline
# micro-kernel templates, unrolled 14 rows deep, clang 14 took 13 minutes to compile that one file
# with it and 2.7 without (the whole fuzz build then about 4), and `make fuzz FUZZ_SECONDS=20`, CI's
# last step, went from ~16 to 6.5 minutes. The fuzzers drive the parsers; the kernels keep every
# check, pointer-overflow included, in `make check` (GCC).
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_CXX ?= clang++
fuzz: $(FDEPS_STAMP)
	@mkdir -p build-fuzz && touch build-fuzz/.deps-build
	$(MAKE) B=build-fuzz CC=$(FUZZ_CC) CXX=$(FUZZ_CXX) FUZZ_LINK=build-fuzz/fuzz/stb_image.o FUZZ_LDFLAGS=-fsanitize=fuzzer \
	    FUZZ_KERNEL_CFLAGS=-fno-sanitize=pointer-overflow \
	    OPT="-O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
	    $(patsubst $(B)/%,build-fuzz/%,$(FUZZ_BIN))
	sh fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_ONLY)

bench: $(TDEPS_STAMP) $(B)/medinfer $(B)/bench_engine $(B)/bench_gcn $(B)/bench_conv $(B)/ort/.done
	$(PYTHON) bench/bench.py --bin $(B) --out $(B)/bench.json

# ONNX Runtime, the bench's second peer and nothing else's (no other target needs Node or npm):
# onnxruntime-node at the version bench/ort/package-lock.json pins, put into $(B)/ort/node_modules
# by `npm ci` with Node.js from tools/install-deps.sh bench. --ignore-scripts: the package's
# postinstall only downloads the CUDA provider (from api.nuget.org); the CPU provider's binaries
# come in the npm package itself. A failure (no root for apt, no registry) is kept in
# $(B)/ort/install.log and does not stop the bench, which then prints "ONNX Runtime: not
# available (...)" in place of that column; the next `make bench` tries again.
$(B)/ort/.done: bench/ort/package.json bench/ort/package-lock.json | $(TDEPS_STAMP)
	@mkdir -p $(B)/ort
	@echo "make bench: onnxruntime-node from bench/ort/package-lock.json into $(B)/ort (log: $(B)/ort/install.log)"
	@( sh tools/install-deps.sh bench && cp bench/ort/package.json bench/ort/package-lock.json $(B)/ort/ && \
	   cd $(B)/ort && npm ci --ignore-scripts --no-audit --no-fund ) >$(B)/ort/install.log 2>&1 && touch $@ || \
	   echo "make bench: ONNX Runtime not installed (see $(B)/ort/install.log); the bench runs without it" >&2

$(B)/bench_engine: bench/bench_engine.c bench/bench_util.h $(B)/libmedinfer.a
	$(CC) $(CFLAGS) -o $@ $< $(B)/libmedinfer.a $(LDLIBS_CORE)

# the slide-classification GCN on one graph (bench/bench_gcn.c: nn/gcn.h is not behind mi_session)
$(B)/bench_gcn: bench/bench_gcn.c bench/bench_util.h $(B)/libmedinfer.a
	$(CC) $(CFLAGS) -o $@ $< $(B)/libmedinfer.a $(LDLIBS_CORE)

# per-stage times of one blob's forward (bench/bench_layers.c), for finding the slow layer
$(B)/bench_layers: bench/bench_layers.c $(B)/libmedinfer.a
	$(CC) $(CFLAGS) -o $@ $< $(B)/libmedinfer.a $(LDLIBS_CORE)

# convolution kernels vs the measured FMA peak (bench/bench_conv.c); not part of `make test`
$(B)/bench_conv: bench/bench_conv.c $(B)/libmedinfer.a
	$(CC) $(CFLAGS) -o $@ $< $(B)/libmedinfer.a $(LDLIBS_CORE)

# The endoscopy completeness QC on two synthetic exams rendered at demo time from the shipped
# demo blob, M-mode echo on the shipped synthetic studies, the gastric slide classification on
# shipped synthetic slides and the real slide in ../shared/data, and lesion segmentation on shipped
# synthetic images and the real Kvasir-SEG images in ../shared/data, and the endoscopy assistant
# (server, workstation, one terminal) on a shipped synthetic sequence: needs the build deps only (no
# PyTorch). tools/endoqc_demo.sh, tools/echo_demo.sh, tools/patho_demo.sh, tools/lesionseg_demo.sh
# and tools/assist_demo.sh say what they do.
demo: $(B)/medinfer
	sh tools/endoqc_demo.sh $(B)
	@echo
	sh tools/echo_demo.sh $(B)
	@echo
	sh tools/patho_demo.sh $(B)
	@echo
	sh tools/lesionseg_demo.sh $(B)
	@echo
	sh tools/assist_demo.sh $(B)

clean:
	rm -rf build build-san build-tsan build-fuzz build-aarch64 build-static

-include $(shell find $(B) -name '*.d' 2>/dev/null)
