# vmgate: one non-recursive Makefile. Everything it makes goes under build/.
#
#   make            build build/vmgate and build/vmgate-signer (installs
#                   missing Debian packages);
#                   fails if core/, tls/ or route/ include a ctl/ header
#   make check-planes  only that check (make test runs it first)
#   make run        build, make a self-signed demo certificate if there is
#                   none, and run on $(CONFIG)
#   make demo       build, start a demo VM (network namespace) with HTTP,
#                   WebSocket and SSH services, run vmgate in front of it
#                   and print the lines to try; Ctrl-C removes it all
#   make test       unit tests (cmocka), the unit tests again under ASan +
#                   UBSan, fuzz corpus replay, a bounded fuzzing run of
#                   every target, then the end-to-end tests (pytest)
#   make unit       only the unit tests
#   make unit-asan  the unit tests built and run with ASan + UBSan (build/asan)
#   make e2e        only the end-to-end tests (E2E_ARGS passes pytest flags)
#   make e2e-fds    the end-to-end tests where sockets matter, on a build
#                   without direct descriptors (build/fds/)
#   make e2e-oldkernel  the end-to-end tests on the default build with the
#                   startup probe capped at Linux 6.1 (plain fds chosen at
#                   run time, as on Debian 12)
#   make e2e-inproc  the handshake tests on the build without vmgate-signer,
#                   whose keys stay in vmgate (Kconfig KEY_SIGNER=n,
#                   build/inproc/); E2E_INPROC_TESTS=tests/e2e for the
#                   whole suite
#   make e2e-hello4k  the ClientHello-limit tests on a sanitized build with
#                   MAX_CLIENTHELLO_BYTES=4096 (build/hello4k/)
#   make fuzz / fuzz-replay / fuzz-run / fuzz-ci   libFuzzer targets
#                   (fuzz/fuzz.mk)
#   make coverage   line coverage of tls/ and route/ from the fuzz corpora
#   make image      the appliance image in build/image/: vmlinuz,
#                   initramfs.img, vmgate.efi, vmgate-disk.img (image/)
#   make config-disk CONFIG=FILE OUT=IMG   a VMGATECFG FAT image holding
#                   FILE as appliance.yaml and the files it names
#   make e2e-image  boot the image under qemu and send traffic through it
#   make image-check  build the image a second time from scratch
#                   (build/repro/) and compare every artifact's sha256
#   make deb        build/deb/vmgate_VERSION_amd64.deb (pkg/deb/)
#   make deb-check  lintian on it, then install it into a debootstrap'd
#                   Debian 12 tree and run vmgate --check there, and the
#                   signer and vmgate as their units would, through a
#                   TLS handshake (root)
#   make check-config   vmgate --check on $(CONFIG)
#   make bench-fleet    fleet mode with 1M VMs in etcd (bench/fleet_bench.py)
#   make defconfig / menuconfig   compile-time options (Kconfig)
#   make clean
#
# User-facing variables:
#   V=1          print every command
#   SANITIZE=1   build everything (vmgate, unit tests) with AddressSanitizer,
#                UndefinedBehaviorSanitizer and LeakSanitizer, under
#                build/asan/; `make test SANITIZE=1` runs the suites on it
#   CONFIG=FILE  the appliance.yaml for `make run` (default: appliance.yaml)
#   CC, CFLAGS, LDFLAGS   the usual
#   E2E_ARGS     extra pytest arguments, e.g. E2E_ARGS="-k ssh -x"

CONFIG   ?= appliance.yaml
# Kconfig output stays in build/ whatever the build flavour, so a sanitized
# build uses the same compile-time options as the normal one.
KBUILD   := build
# FLAVOUR=fds: the build on plain fds (Kconfig DIRECT_DESCRIPTORS=n), with
# its own .config, in build/fds/ (make e2e-fds).
# FLAVOUR=inproc: Kconfig KEY_SIGNER=n (private keys in vmgate, signed in
# process by BoringSSL; no vmgate-signer), in build/inproc/ (make
# e2e-inproc).
# FLAVOUR=hello4k: Kconfig MAX_CLIENTHELLO_BYTES=4096 with the sanitizers,
# in build/hello4k/ (make e2e-hello4k): a build whose ClientHello cap is
# below the 16 KiB runtime default.
ifeq ($(FLAVOUR),fds)
KBUILD   := build/fds
BUILD    := build/fds
SAN_FLAGS :=
else ifeq ($(FLAVOUR),inproc)
KBUILD   := build/inproc
BUILD    := build/inproc
SAN_FLAGS :=
else ifeq ($(FLAVOUR),hello4k)
KBUILD   := build/hello4k
BUILD    := build/hello4k
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
             -fno-omit-frame-pointer
else ifeq ($(FLAVOUR),repro)
# FLAVOUR=repro: the same configuration built a second time, from
# scratch, in build/repro/ (make image-check compares the two images).
BUILD    := build/repro
SAN_FLAGS :=
else ifeq ($(SANITIZE),1)
BUILD    := build/asan
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
             -fno-omit-frame-pointer
else
BUILD    := build
SAN_FLAGS :=
endif
CC       ?= cc
PYTHON   := /usr/bin/python3
# The e2e suites run in a network namespace of their own (fixed ports, no
# clash between two runs on one machine): see tests/e2e/isolated.
E2E_PY   := tests/e2e/isolated $(PYTHON)

BSSL_INC := /usr/include/android
BSSL_LIB := /usr/lib/x86_64-linux-gnu/android

CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wshadow \
            -Wstrict-prototypes -fno-strict-aliasing -pthread \
            -D_GNU_SOURCE -I. -I$(KBUILD) -isystem $(BSSL_INC) -MMD -MP \
            -ffile-prefix-map=$(CURDIR)=. $(SAN_FLAGS)
LDFLAGS  += $(SAN_FLAGS)
# No -lcurl-gnutls: ctl/etcd.c loads libcurl with dlopen in fleet mode
# only (its dependencies bring OpenSSL's libcrypto.so.3, which must not
# bind to BoringSSL); libcurl4-gnutls-dev is for <curl/curl.h>.
LDLIBS   := -L$(BSSL_LIB) -Wl,-rpath,$(BSSL_LIB) -lssl -lcrypto \
            -luring -lyaml -ljansson -lhttp_parser -lbpf -lsodium -lgmp -lpthread

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-6s %s\n' $(1) $(2)
endif

# Debian packages: what building needs, and what the tests add to it.
DEB_BUILD := gcc make liburing-dev android-libboringssl-dev libyaml-dev \
             libjansson-dev libhttp-parser-dev python3-kconfiglib openssl \
             libbpf-dev clang linux-libc-dev libcurl4-gnutls-dev \
             libssl-dev libsodium-dev libgmp-dev
DEB_TEST  := $(DEB_BUILD) libcmocka-dev python3-pytest python3-websockets \
             python3-h2 openssh-server openssh-client curl nghttp2-client \
             nghttp2-server iproute2 procps util-linux clang \
             libclang-rt-14-dev llvm-14 testssl.sh haproxy nginx etcd-server etcd-client
# The appliance image (make image), and what booting it in tests adds.
DEB_IMAGE := busybox-static mtools dosfstools fdisk systemd-boot-efi e2fsprogs \
             binutils kmod python3-yaml
DEB_IMAGE_TEST := $(DEB_IMAGE) qemu-system-x86 ovmf openssh-server cpio \
             openssh-client curl openssl python3-pytest
# The Debian package (make deb) and its test (make deb-check).
DEB_PKG   := binutils python3-pytest python3-yaml lintian debootstrap systemd

# Library objects: everything but main.c. Tests link against these. The
# data plane is core/, tls/ and route/; the control plane is ctl/.
LIB_SRCS := $(filter-out %.bpf.c,$(wildcard core/*.c tls/*.c route/*.c)) \
            signer/keyop.c \
            $(filter-out ctl/main.c,$(wildcard ctl/*.c ctl/*/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libvmgate.a
BIN      := $(BUILD)/vmgate
SIGNER   := $(BUILD)/vmgate-signer
# vmgate-signer is built, installed and shipped with Kconfig KEY_SIGNER
# (the default), not in a build that holds its keys itself: FLAVOUR=inproc,
# or a .config that says so (make menuconfig).
KEY_SIGNER_OFF := $(if $(filter inproc,$(FLAVOUR)),y,$(shell grep -sqx \
    '\# CONFIG_KEY_SIGNER is not set' $(KBUILD)/.config && echo y))
SIGNER_BIN := $(if $(KEY_SIGNER_OFF),,$(SIGNER))

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all check-planes run demo test unit unit-asan e2e e2e-fds e2e-oldkernel e2e-hello4k check-config defconfig menuconfig clean \
        deps-build deps-test
.DEFAULT_GOAL := all

all: deps-build check-planes $(BIN) $(SIGNER_BIN)

# The data plane (core/, tls/, route/) never includes a control-plane
# (ctl/) header: make fails, naming the line.
check-planes:
	@! grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]ctl/' core tls route || { echo "check-planes: core/, tls/ and route/ must not include ctl/ headers" >&2; exit 1; }

# apt-get update once, then install only what is missing.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "  APT   $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null \
	    || { echo "apt-get install failed:$$missing" >&2; \
	         [ "$$(id -u)" = 0 ] || echo "installing Debian packages is the one step that needs root" >&2; \
	         exit 1; }; \
	fi
endef

deps-build:
	$(call apt_install,$(DEB_BUILD))

deps-test:
	$(call apt_install,$(DEB_TEST))

# Kconfig -> build/.config -> build/config.h
KCONFIG_ENV := KCONFIG_CONFIG=$(KBUILD)/.config

$(KBUILD)/.config: Kconfig | deps-build
	@mkdir -p $(KBUILD)
	$(call msg,KCONFIG,$@)
	$(Q)if [ -f $@ ]; then $(KCONFIG_ENV) $(PYTHON) -m olddefconfig Kconfig >/dev/null; \
	    else $(KCONFIG_ENV) $(PYTHON) -m alldefconfig Kconfig >/dev/null; fi
ifeq ($(FLAVOUR),fds)
	$(Q)sed -i 's/^CONFIG_DIRECT_DESCRIPTORS=y$$/# CONFIG_DIRECT_DESCRIPTORS is not set/' $@
endif
ifeq ($(FLAVOUR),hello4k)
	$(Q)sed -i 's/^CONFIG_MAX_CLIENTHELLO_BYTES=.*/CONFIG_MAX_CLIENTHELLO_BYTES=4096/' $@
endif
ifeq ($(FLAVOUR),inproc)
	$(Q)sed -i 's/^CONFIG_KEY_SIGNER=y$$/# CONFIG_KEY_SIGNER is not set/' $@
endif
	$(Q)touch $@

$(KBUILD)/config.h: $(KBUILD)/.config
	$(call msg,GEN,$@)
	$(Q)$(KCONFIG_ENV) $(PYTHON) -m genconfig --header-path $@ Kconfig
	$(Q)touch $@

defconfig: deps-build
	@mkdir -p $(KBUILD)
	$(Q)$(KCONFIG_ENV) $(PYTHON) -m alldefconfig Kconfig
	$(Q)$(KCONFIG_ENV) $(PYTHON) -m genconfig --header-path $(KBUILD)/config.h Kconfig

menuconfig: deps-build
	@mkdir -p $(KBUILD)
	$(KCONFIG_ENV) $(PYTHON) -m menuconfig Kconfig
	$(KCONFIG_ENV) $(PYTHON) -m genconfig --header-path $(KBUILD)/config.h Kconfig

$(BUILD)/obj/%.o: %.c $(KBUILD)/config.h
	@mkdir -p $(dir $@)
	$(call msg,CC,$<)
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# The sk_lookup program (core/steer.bpf.c), compiled for the BPF target and
# embedded in core/steer.c's object with .incbin.
STEER_BPF := $(BUILD)/bpf/steer.bpf.o
$(STEER_BPF): core/steer.bpf.c core/steer-t.h | deps-build
	@mkdir -p $(dir $@)
	$(call msg,BPF,$<)
	$(Q)clang -O2 -g -target bpf -I. -I/usr/include/$(shell gcc -dumpmachine) \
	  -Wall -c -o $@ $<

$(BUILD)/obj/core/steer.o: $(STEER_BPF)
$(BUILD)/obj/core/steer.o: CFLAGS += -DSTEER_BPF_OBJ='"$(STEER_BPF)"'

$(LIB): $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BIN): $(BUILD)/obj/ctl/main.o $(LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# vmgate-signer (signer/): OpenSSL 3's libcrypto, never BoringSSL: no
# BoringSSL header path and no BoringSSL library on its command lines.
SIGNER_SRCS := signer/main.c signer/keyop.c signer/getpid.c signer/sandbox.c
SIGNER_OBJS := $(SIGNER_SRCS:%.c=$(BUILD)/obj-signer/%.o)
# In a sanitized build it gets UBSan only: LeakSanitizer stops the process
# with ptrace at exit, which the signer has forbidden itself (not dumpable,
# seccomp), and would fail every run with a fatal error of its own.
SIGNER_SAN := $(if $(SAN_FLAGS),-fsanitize=undefined -fno-sanitize-recover=undefined)
SIGNER_CFLAGS := $(filter-out -isystem $(BSSL_INC) $(SAN_FLAGS),$(CFLAGS)) \
                 $(SIGNER_SAN)

$(BUILD)/obj-signer/%.o: %.c
	@mkdir -p $(dir $@)
	$(call msg,CC,$<)
	$(Q)$(CC) $(SIGNER_CFLAGS) -c -o $@ $<

$(SIGNER): $(SIGNER_OBJS)
	$(call msg,LD,$@)
	$(Q)$(CC) $(SIGNER_CFLAGS) $(filter-out $(SAN_FLAGS),$(LDFLAGS)) -o $@ $^ \
	  -lcrypto

# Unit tests: one program per tests/unit/test_NAME.c, linked with the library.
$(BUILD)/tests/%: tests/unit/%.c $(LIB) $(KBUILD)/config.h
	@mkdir -p $(dir $@)
	$(call msg,CC,$<)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) -lcmocka

# The signer's getpid is tested as the signer is built: OpenSSL 3's
# libcrypto, no BoringSSL.
$(BUILD)/tests/test_signer_getpid: tests/unit/test_signer_getpid.c \
                                   signer/getpid.c
	@mkdir -p $(dir $@)
	$(call msg,CC,$<)
	$(Q)$(CC) $(SIGNER_CFLAGS) $(filter-out $(SAN_FLAGS),$(LDFLAGS)) \
	  -o $@ $^ -lcrypto -lcmocka

# The signer's seccomp filter, as the signer is built.
$(BUILD)/tests/test_signer_sandbox: tests/unit/test_signer_sandbox.c \
                                    signer/sandbox.c signer/sandbox.h
	@mkdir -p $(dir $@)
	$(call msg,CC,$<)
	$(Q)$(CC) $(SIGNER_CFLAGS) $(filter-out $(SAN_FLAGS),$(LDFLAGS)) \
	  -o $@ $(filter %.c,$^) -lcmocka

unit: deps-test $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do \
	  echo "== $$t"; (cd tests/unit && ../../$$t) || fail=1; done; \
	exit $$fail

# The same unit tests, built a second time with the sanitizers into
# build/asan/ (its own objects), and run. A report fails the run: ASan and
# UBSan abort, LeakSanitizer makes the exit status non-zero.
unit-asan: deps-test
	@$(MAKE) --no-print-directory SANITIZE=1 unit

# A BoringSSL client for the KeyUpdate tests (tests/e2e/test_keyupdate.py):
# always the plain build, whatever flavour the gate is.
KUCLIENT := build/tests/kuclient
$(KUCLIENT): tests/e2e/kuclient.c | deps-build
	@mkdir -p $(dir $@)
	$(call msg,CC,$<)
	$(Q)$(CC) -O2 -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter \
	  -isystem $(BSSL_INC) -o $@ $< -L$(BSSL_LIB) -Wl,-rpath,$(BSSL_LIB) \
	  -lssl -lcrypto

# With SANITIZE=1 the tests run build/asan/vmgate; sanitizer reports go to
# build/asan/san.* (vmgate's stderr is its log), and any such file fails
# the run. ASan keeps freed memory in quarantine to catch use after free
# (256 MiB by default): 16 MiB still catches recent frees, and keeps the
# tests that check vmgate's RSS stays bounded meaningful.
SAN_LOG := $(abspath $(BUILD))/san
e2e: deps-test $(BIN) $(SIGNER_BIN) $(KUCLIENT)
ifeq ($(SANITIZE),1)
	@rm -f $(SAN_LOG).*
	VMGATE_BIN=$(abspath $(BIN)) VMGATE_SANITIZED=1 \
	ASAN_OPTIONS=log_path=$(SAN_LOG):detect_leaks=1:quarantine_size_mb=16 \
	UBSAN_OPTIONS=log_path=$(SAN_LOG):print_stacktrace=1 \
	  $(E2E_PY) -m pytest -q -p no:cacheprovider tests/e2e $(E2E_ARGS); \
	rc=$$?; if ls $(SAN_LOG).* >/dev/null 2>&1; then \
	  cat $(SAN_LOG).*; echo "e2e: sanitizer reports in $(SAN_LOG).*" >&2; \
	  exit 1; fi; exit $$rc
else
	VMGATE_BIN=$(abspath $(BIN)) \
	  $(E2E_PY) -m pytest -q -p no:cacheprovider tests/e2e $(E2E_ARGS)
endif

# The other socket mode: the default build keeps sockets as io_uring
# direct descriptors, this one as plain fds. The tests where that changes
# what the code does: accepts and fd exhaustion, half-close, bulk and
# backpressure, many connections, the dialled address (getsockname) of a
# PROXY header and the dialled port of sk_lookup steering, the raw relay
# of tls: passthrough.
E2E_FDS_TESTS := tests/e2e/test_attacks.py tests/e2e/test_halfclose.py \
                 tests/e2e/test_bulk.py tests/e2e/test_concurrency.py \
                 tests/e2e/test_proxy_protocol.py tests/e2e/test_anyport.py \
                 tests/e2e/test_passthrough.py
e2e-fds: deps-test
	@$(MAKE) --no-print-directory FLAVOUR=fds all
	VMGATE_BIN=$(abspath build/fds/vmgate) \
	  $(E2E_PY) -m pytest -q -p no:cacheprovider $(E2E_FDS_TESTS) $(E2E_ARGS)

# The runs of the suite after `make e2e` leave out the tests marked
# `once` (testssl.sh, a minute; fleet mode's modules, a minute and a
# half): what they check is the same in every socket mode and key path.
E2E_AGAIN := -m 'not once'

# The build without vmgate-signer, whose private keys stay in vmgate
# (Kconfig KEY_SIGNER=n; the default is y): the tests where a handshake's
# signature, its alerts, resumption or a certificate reload is what is
# checked. The whole suite passes on it too (E2E_INPROC_TESTS=tests/e2e),
# in ~4 minutes that make test cannot spend twice.
E2E_INPROC_TESTS ?= tests/e2e/test_signer.py tests/e2e/test_tls.py \
                    tests/e2e/test_tls_posture.py tests/e2e/test_sigalgs.py \
                    tests/e2e/test_keyupdate.py tests/e2e/test_tls_post_handshake.py \
                    tests/e2e/test_http.py tests/e2e/test_h2.py tests/e2e/test_ssh.py \
                    tests/e2e/test_reload.py tests/e2e/test_proxy_protocol.py \
                    tests/e2e/test_vm_answers.py
.PHONY: inproc-build e2e-inproc
inproc-build: deps-build
	@$(MAKE) --no-print-directory FLAVOUR=inproc all

e2e-inproc: deps-test inproc-build $(KUCLIENT)
	VMGATE_BIN=$(abspath build/inproc/vmgate) \
	  $(E2E_PY) -m pytest -q -p no:cacheprovider $(E2E_AGAIN) \
	    $(E2E_INPROC_TESTS) $(E2E_ARGS)

# The default build as on Debian 12's Linux 6.1: VMGATE_PROBE_KERNEL (for
# tests) makes the startup probe report no more than that release has, so
# the socket mode is chosen at run time as there (plain fds: no io_uring
# socket setsockopt before 6.7). The whole suite (but the `once` tests),
# then the session gate's startup line must say mode=fds (its log is under
# --basetemp).
E2E_OLDKERNEL_TMP := $(abspath $(BUILD))/e2e-oldkernel
e2e-oldkernel: deps-test $(BIN) $(SIGNER_BIN) $(KUCLIENT)
	VMGATE_BIN=$(abspath $(BIN)) VMGATE_PROBE_KERNEL=6.1 \
	  $(E2E_PY) -m pytest -q -p no:cacheprovider $(E2E_AGAIN) \
	    --basetemp=$(E2E_OLDKERNEL_TMP) tests/e2e $(E2E_ARGS); \
	rc=$$?; log=$(E2E_OLDKERNEL_TMP)/vmgate-e2e0/vmgate.log; \
	if ! grep -q 'INFO sockets mode=fds .*probe_kernel=6.1 ' $$log; then \
	  echo "e2e-oldkernel: no 'sockets mode=fds' startup line in $$log" >&2; \
	  exit 1; fi; exit $$rc

# A build with a 4 KiB ClientHello cap, under the sanitizers: with no
# limits: key its default limit must follow the cap (a 12 KiB hello once
# overflowed the 4 KiB reassembly buffer). Any sanitizer report fails it.
HELLO4K_SAN := $(abspath build/hello4k)/san
E2E_HELLO4K_TESTS := tests/e2e/test_hello_limit.py \
                     "tests/e2e/test_attacks.py::test_hello_over_max_clienthello_bytes" \
                     "tests/e2e/test_attacks.py::test_max_clienthello_bytes_setting"
e2e-hello4k: deps-test
	@$(MAKE) --no-print-directory FLAVOUR=hello4k all
	@rm -f $(HELLO4K_SAN).*
	VMGATE_BIN=$(abspath build/hello4k/vmgate) VMGATE_SANITIZED=1 \
	ASAN_OPTIONS=log_path=$(HELLO4K_SAN):detect_leaks=1:quarantine_size_mb=16 \
	UBSAN_OPTIONS=log_path=$(HELLO4K_SAN):print_stacktrace=1 \
	  $(E2E_PY) -m pytest -q -p no:cacheprovider $(E2E_HELLO4K_TESTS) $(E2E_ARGS); \
	rc=$$?; if ls $(HELLO4K_SAN).* >/dev/null 2>&1; then \
	  cat $(HELLO4K_SAN).*; echo "e2e-hello4k: sanitizer reports in $(HELLO4K_SAN).*" >&2; \
	  exit 1; fi; exit $$rc

# CI: unit, sanitized unit, corpus + regression replay, a bounded fuzzing
# run of each target (FUZZ_CI_SECONDS), the plain-fd build's socket tests,
# end-to-end last so that pytest's summary is the final line. With
# SANITIZE=1, `unit` already is the sanitized build.
# Each step but the last says how long it took ("== make unit: 41 s").
step = t0=$$(date +%s); $(MAKE) --no-print-directory $(1); rc=$$?; \
       echo "== make $(1): $$(( $$(date +%s) - t0 )) s"; exit $$rc
test: deps-test
	@$(MAKE) --no-print-directory check-planes
	@$(call step,unit)
ifneq ($(SANITIZE),1)
	@$(call step,unit-asan)
endif
	@$(call step,fuzz-replay)
	@$(call step,fuzz-ci)
ifneq ($(SANITIZE),1)
	@$(call step,e2e-fds)
	@$(call step,e2e-oldkernel)
	@$(call step,e2e-inproc)
endif
	@$(call step,e2e-hello4k)
ifneq ($(SANITIZE),1)
	@$(call step,image-check)
	@$(call step,e2e-image)
	@$(call step,deb-check)
endif
	@$(MAKE) --no-print-directory e2e

# A demo certificate for the shipped appliance.yaml, made once, kept under
# build/ so the tree stays clean.
DEMO_CERT := $(KBUILD)/demo/fullchain.pem
$(DEMO_CERT): | deps-build
	@mkdir -p $(dir $@)
	$(call msg,CERT,$@)
	$(Q)openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	  -days 825 -subj "/CN=vm.vers.sh" \
	  -addext "subjectAltName=DNS:*.vm.vers.sh,DNS:vm.vers.sh" \
	  -keyout $(KBUILD)/demo/key.pem -out $@ 2>/dev/null

run: all $(DEMO_CERT)
	$(BIN) -c $(CONFIG)

# What demo/run.py needs besides the build.
DEB_DEMO := iproute2 openssh-server openssh-client python3-websockets curl \
            util-linux

demo: all $(DEMO_CERT)
	$(call apt_install,$(DEB_DEMO))
	@$(PYTHON) demo/run.py

check-config: all
	$(BIN) --check -c $(CONFIG)

# The benchmark against HAProxy, nginx and hitch (bench/README.md), vmgate
# twice: keys in vmgate-signer (build/vmgate, the default) and in process
# (build/inproc/vmgate, hence inproc-build; bench/run.py tells them apart
# by their config.h); then the any-port step (bench/anyport.py: sk_lookup
# with 65,535 ports against 3 per-port listeners, in a namespace of its
# own); BENCH_QUICK=1 for the short run.
.PHONY: bench bench-anyport
bench: all inproc-build
	BENCH_VMGATE_BINS=$${BENCH_VMGATE_BINS:-$(abspath $(BIN)),$(abspath build/inproc/vmgate)} \
	  $(PYTHON) bench/run.py
	$(PYTHON) bench/anyport.py

bench-anyport: all
	$(PYTHON) bench/anyport.py

# The route table at fleet scale (bench/route_bench.c): load time, memory
# per VM, lookup latency and derive time for 1M VMs.
ROUTE_BENCH := $(BUILD)/bench/route_bench
ROUTE_BENCH_YAML := $(BUILD)/bench/vms-1m.yaml

$(ROUTE_BENCH): bench/route_bench.c $(LIB) $(BUILD)/config.h
	@mkdir -p $(dir $@)
	$(call msg,CC,$<)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# Fleet mode at scale (bench/fleet_bench.py): BENCH_FLEET_VMS (default
# 1,000,000) VMs in a 3-member etcd, an appliance's cold and warm start,
# RSS, and put-to-routed latency on 3 appliances. Not in `make test`.
.PHONY: bench-fleet
bench-fleet: all
	$(call apt_install,etcd-server)
	$(PYTHON) bench/fleet_bench.py

.PHONY: bench-route
bench-route: deps-build $(ROUTE_BENCH)
	$(Q)test -f $(ROUTE_BENCH_YAML) || \
	    $(ROUTE_BENCH) --gen $(ROUTE_BENCH_YAML) 1000000
	$(ROUTE_BENCH) $(ROUTE_BENCH_YAML)

clean:
	rm -rf $(BUILD)

# The appliance image (image/mkimage.py says how each piece is made).
# Everything but installing the Debian packages runs as a normal user.
IMG      := $(BUILD)/image
MKIMAGE  := $(PYTHON) image/mkimage.py
IMG_ROOTFS := $(shell find image/rootfs -type f 2>/dev/null)
IMG_ARTIFACTS := $(IMG)/vmlinuz $(IMG)/initramfs.img $(IMG)/vmgate.efi \
                 $(IMG)/vmgate-disk.img
.PHONY: image image-check config-disk e2e-image deps-image deps-image-test

deps-image:
	$(call apt_install,$(DEB_IMAGE))

deps-image-test:
	$(call apt_install,$(DEB_IMAGE_TEST))

image: deps-build deps-image check-planes $(IMG_ARTIFACTS)

$(IMG)/kernel/package: $(KBUILD)/.config image/mkimage.py | deps-image
	$(Q)$(MKIMAGE) kernel --config $(KBUILD)/.config --out $(IMG)

$(IMG)/initramfs.img: $(IMG)/kernel/package $(BIN) $(SIGNER_BIN) \
                      $(IMG_ROOTFS) image/mkimage.py $(KBUILD)/.config
	$(Q)$(MKIMAGE) initramfs --config $(KBUILD)/.config --out $(IMG) \
	  --vmgate $(BIN) $(if $(SIGNER_BIN),--signer $(SIGNER_BIN))

$(IMG)/vmlinuz: $(IMG)/initramfs.img

$(IMG)/vmgate.efi: $(IMG)/initramfs.img image/mkimage.py
	$(Q)$(MKIMAGE) efi --config $(KBUILD)/.config --out $(IMG)

$(IMG)/vmgate-disk.img: $(IMG)/vmgate.efi image/mkimage.py
	$(Q)$(MKIMAGE) disk --config $(KBUILD)/.config --out $(IMG)

config-disk: deps-image
	@test -n "$(OUT)" || { echo "config-disk: say OUT=IMG (and CONFIG=FILE)" >&2; exit 2; }
	$(Q)$(MKIMAGE) config-disk $(CONFIG) $(OUT) $(if $(NETWORK),--network $(NETWORK))

# Two builds from scratch, the second in build/repro/, must give the same
# bytes: the images are made from the same tree and the same packages.
image-check: image
	@rm -rf build/repro
	@$(MAKE) --no-print-directory FLAVOUR=repro image
	@fail=0; for f in $(notdir $(IMG_ARTIFACTS)); do \
	  a=$$(sha256sum < build/image/$$f | cut -c1-64); \
	  b=$$(sha256sum < build/repro/image/$$f | cut -c1-64); \
	  if [ "$$a" = "$$b" ]; then echo "  SAME   $$f $$a"; \
	  else echo "  DIFFER $$f $$a $$b" >&2; fail=1; fi; done; \
	if [ $$fail = 0 ]; then echo "image-check: 4 artifacts reproducible"; \
	else echo "image-check: build/image and build/repro/image differ" >&2; fi; \
	exit $$fail

# Boots the image under qemu (TCG unless QEMU_ACCEL=kvm) and sends real
# traffic through it (tests/image/).
e2e-image: deps-test deps-image-test image
	VMGATE_IMAGE=$(abspath $(IMG)) VMGATE_BIN=$(abspath $(BIN)) \
	  $(E2E_PY) -m pytest -q -p no:cacheprovider --basetemp=$(abspath $(BUILD))/image-test \
	    tests/image $(E2E_ARGS)

include fuzz/fuzz.mk

# Header dependencies (-MMD) of vmgate's objects and of the signer's.
-include $(shell find $(BUILD)/obj $(BUILD)/obj-signer -name '*.d' 2>/dev/null)

# The Debian package for running vmgate on an existing host (pkg/deb/).
.PHONY: deb deb-check deps-deb
deps-deb:
	$(call apt_install,$(DEB_PKG))

deb: all deps-deb
	$(Q)rm -f $(BUILD)/deb/vmgate_*_amd64.deb
	$(Q)$(PYTHON) pkg/deb/mkdeb.py --vmgate $(BIN) \
	  $(if $(SIGNER_BIN),--signer $(SIGNER_BIN)) --out $(BUILD)/deb

deb-check: deb
	VMGATE_DEB_DIR=$(abspath $(BUILD)/deb) VMGATE_DEB_WORK=$(abspath $(BUILD)/deb-check) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/deb $(E2E_ARGS)
