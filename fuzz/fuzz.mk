# fuzz/fuzz.mk: libFuzzer targets, included from the main Makefile.
#
#   make fuzz          build every target under build/fuzz/
#   make fuzz-replay   run each target once over its seed corpus
#                      (fuzz/corpus/NAME/); fails on any crash
#   make fuzz-run      fuzz each target for FUZZ_SECONDS (default 60),
#                      new inputs go to build/fuzz/corpus/NAME/
#
# One target per parser: fuzz/NAME.c, built with the sources it exercises.
# Variables here start with FUZZ_ so they cannot clash with the Makefile's.
# Needs clang and libclang-rt-14-dev (libFuzzer and the sanitizers).

FUZZ_CC      := clang
FUZZ_BUILD   := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_BSSL    := /usr/lib/x86_64-linux-gnu/android
FUZZ_CFLAGS  := -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -I. -Ibuild \
                -isystem /usr/include/android
FUZZ_LDLIBS  := -L$(FUZZ_BSSL) -Wl,-rpath,$(FUZZ_BSSL) -lcrypto

FUZZ_TARGETS := clienthello
FUZZ_SRCS_clienthello := tls/hello.c fuzz/clienthello.c

FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)

.PHONY: fuzz fuzz-replay fuzz-run

fuzz: $(FUZZ_BINS)

$(FUZZ_BUILD)/clienthello: $(FUZZ_SRCS_clienthello) tls/hello.h
	@mkdir -p $(dir $@)
	$(call msg,FUZZCC,$@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_SRCS_clienthello) $(FUZZ_LDLIBS)

fuzz-replay: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
	  echo "== $$t"; \
	  $(FUZZ_BUILD)/$$t -runs=0 fuzz/corpus/$$t || exit 1; done

fuzz-run: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
	  echo "== $$t ($(FUZZ_SECONDS) s)"; mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  $(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=20000 \
	    $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t || exit 1; done
