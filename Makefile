# sbx build. `make` builds build/sbxd, build/sbx-spawner, build/sbx, build/sbx-init (static)
# and the test probe; `make test` runs every test (unit, then integration against real sandboxes).
CC      ?= gcc
CFLAGS  ?= -O2 -g
WARN     = -std=c11 -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
           -Wno-unused-parameter -Wno-format-truncation
HARDEN   = -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fstack-clash-protection -fPIE \
           -fcf-protection
ALL_CFLAGS = $(WARN) $(HARDEN) -D_GNU_SOURCE -Isrc $(CFLAGS)
LDRELRO  = -Wl,-z,relro,-z,now
LDHARDEN = -pie $(LDRELRO)
LDSTATIC = -static-pie $(LDRELRO)
B        = build
# The archive rules below come first: without this, a bare `make` built only one of them.
.DEFAULT_GOAL := all

# One archive per folder, so a module's tests link only what it needs.
MODULES  = common proto runtime images store billing server
define module_rules
$(1)_SRCS := $$(filter-out src/$(1)/main.c,$$(wildcard src/$(1)/*.c))
$(1)_OBJS := $$(patsubst src/%.c,$(B)/obj/%.o,$$($(1)_SRCS))
$(B)/lib$(1).a: $$($(1)_OBJS)
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call module_rules,$(m))))

SERVER_LIBS = -lmicrohttpd -ljansson -lsqlite3 -lseccomp -lcurl -lsecp256k1 -lcrypto -lpthread
CLI_LIBS    = -ljansson -lseccomp -lpthread  # libcurl: loaded on demand, see src/cli/curl_lazy.c

all: $(B)/sbx-init $(B)/sbx $(B)/sbxd $(B)/sbx-spawner $(B)/sbx-probe $(B)/sbx-admin

$(B)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(B)/obj/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

# sbx-init is PID 1 of every sandbox: static, so it needs nothing from the image. Linked
# against musl when musl-gcc is there (scripts/install-deps.sh installs it): glibc's
# start-up probes the CPU with ~70 CPUID instructions, each a trap to the hypervisor on
# nested VMs (PERF.md): a static glibc `int main(){}` takes 0.5 ms here, a musl one 0.2,
# and sbx-init starts once per sandbox. Else glibc.
AGENT_OBJS = $(patsubst src/%.c,$(B)/obj/%.o,$(wildcard src/agent/*.c))
MUSL_GCC := $(shell command -v musl-gcc 2>/dev/null)
ifneq ($(MUSL_GCC),)
INIT_OBJS = $(patsubst src/%.c,$(B)/musl/%.o,$(wildcard src/agent/*.c) $(common_SRCS) $(proto_SRCS))
# musl ships no kernel headers: use the system's linux/ and asm/ (uapi, libc-neutral).
$(B)/musl/include/.stamp:
	@mkdir -p $(@D)
	ln -sfn /usr/include/linux $(@D)/linux
	ln -sfn /usr/include/asm-generic $(@D)/asm-generic
	ln -sfn /usr/include/$(shell $(CC) -print-multiarch)/asm $(@D)/asm
	touch $@
$(B)/musl/%.o: src/%.c $(B)/musl/include/.stamp
	@mkdir -p $(@D)
	$(MUSL_GCC) $(ALL_CFLAGS) -isystem $(B)/musl/include -MMD -MP -c $< -o $@
# Static, not static-pie: Debian's musl-gcc cannot link a working static-pie. The image's
# address is fixed then (stack, heap and mmaps stay randomized); nothing inside the
# sandbox can read or trace PID 1's memory (non-dumpable, no capabilities).
$(B)/sbx-init: $(INIT_OBJS)
	$(MUSL_GCC) -static $(LDRELRO) -o $@ $^
else
$(B)/sbx-init: $(AGENT_OBJS) $(B)/libproto.a $(B)/libcommon.a
	$(CC) $(LDSTATIC) -o $@ $^
endif

CLI_OBJS = $(patsubst src/%.c,$(B)/obj/%.o,$(wildcard src/cli/*.c))
$(B)/sbx: $(CLI_OBJS) $(B)/libimages.a $(B)/libruntime.a $(B)/libproto.a $(B)/libcommon.a
	$(CC) $(LDHARDEN) -o $@ $^ $(CLI_LIBS)

# sbx-admin (`sbx admin`): accounts, API keys, settlements on the state dir's database.
$(B)/sbx-admin: $(B)/obj/admin/main.o $(B)/libstore.a $(B)/libbilling.a $(B)/libcommon.a
	$(CC) $(LDHARDEN) -o $@ $^ -ljansson -lsqlite3 -lcurl -lpthread

SBXD_LIBS = $(B)/libserver.a $(B)/libbilling.a $(B)/libstore.a $(B)/libimages.a \
            $(B)/libruntime.a $(B)/libproto.a $(B)/libcommon.a
$(B)/sbxd: $(B)/obj/server/main.o $(SBXD_LIBS)
	$(CC) $(LDHARDEN) -o $@ $^ $(SERVER_LIBS)

# sbxd's spawner processes (src/runtime/spawner.c): linked with only what a spawn needs,
# since every clone3 copies the spawner's memory map.
$(B)/sbx-spawner: $(B)/obj/spawner/main.o $(B)/libruntime.a $(B)/libcommon.a
	$(CC) $(LDHARDEN) -o $@ $^ -lseccomp -lpthread

# The probe runs inside sandboxes in tests: static, no dependency on the image.
$(B)/sbx-probe: tests/probe/probe.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LDSTATIC) -o $@ $<

# Unit tests: tests/unit/test_<module>_<topic>.c, cmocka, built with ASan and UBSan.
UNIT_SRCS  = $(wildcard tests/unit/test_*.c)
UNIT_BINS  = $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRCS))
# float-cast-overflow: gcc leaves it out of -fsanitize=undefined (clang has it in).
SAN        = -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer
# -MMD: a test binary is rebuilt when a header it includes changes (test_*_util.h too);
# those headers then are prerequisites too, hence the filter.
$(B)/tests/%: tests/unit/%.c $(SBXD_LIBS:$(B)/%=$(B)/san/%)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SAN) -MMD -MP -MF $@.d -MT $@ -o $@ $(filter %.c %.a,$^) \
	  -lcmocka $(SERVER_LIBS)

# Sanitized copies of the module archives for unit tests.
$(B)/san/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SAN) -MMD -MP -c $< -o $@
define san_rules
$(B)/san/lib$(1).a: $$(patsubst src/%.c,$(B)/san/obj/%.o,$$($(1)_SRCS))
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call san_rules,$(m))))

# test_agent_exec drives a real build/sbx-init outside any sandbox.
$(B)/tests/test_agent_exec: | $(B)/sbx-init
$(B)/tests/test_agent_proc: | $(B)/sbx-init
$(B)/tests/test_agent_files: | $(B)/sbx-init

# libFuzzer targets (clang): `make fuzz`, then e.g.
#   mkdir -p /tmp/corpus && build/fuzz_proto -max_total_time=60 /tmp/corpus tests/fuzz/corpus/proto
# (new inputs go to the first directory, so the committed seeds stay as they are).
# -fno-sanitize-recover: undefined behaviour is a crash; else UBSan prints and goes on, and
# libFuzzer never sees it.
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
             -D_GNU_SOURCE -Isrc
$(B)/fuzz_%: tests/fuzz/fuzz_%.c
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) $< $(FUZZ_SRCS_$*) -o $@ $(FUZZ_LIBS_$*)
FUZZ_SRCS_proto = $(proto_SRCS) $(common_SRCS)
FUZZ_SRCS_x402  = $(billing_SRCS) $(common_SRCS)
FUZZ_LIBS_x402  = -ljansson -lsecp256k1 -lpthread
# sbxd's request parsing and the handlers that answer without a sandbox: all of sbxd but main.c
FUZZ_SRCS_requests = $(foreach m,server billing store images runtime proto common,$($(m)_SRCS))
FUZZ_LIBS_requests = $(SERVER_LIBS)
fuzz: $(patsubst tests/fuzz/fuzz_%.c,$(B)/fuzz_%,$(wildcard tests/fuzz/fuzz_*.c))

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; ./$$t; done

integration: all
	/usr/bin/python3 -m pytest -q -ra tests/integration

test: unit integration

bench: all
	bench/run.sh

# API latency and throughput, and density (N=5000 for more), against a private sbxd.
bench-api: all
	bench/api.py api --pool-args "--pool-size 8"

bench-density: all
	bench/api.py density --n $(or $(N),1000)

# mount(2) against the new mount API for a sandbox's scratch tmpfs and overlay.
$(B)/bench-mount-api: bench/mount_api.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $<
bench-mount: all $(B)/bench-mount-api
	$(B)/sbx run -q -- /bin/true
	$(B)/bench-mount-api 400 $${SBX_STATE_DIR:-/var/lib/sbx}/images/python-3.11/rootfs

clean:
	rm -rf $(B)

.PHONY: all unit integration test bench bench-api bench-density bench-mount fuzz clean
.DELETE_ON_ERROR:
-include $(shell find $(B) -name '*.d' 2>/dev/null)
