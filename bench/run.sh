#!/bin/bash
# bench/run.sh (`make bench`): start-up of one-shot sandboxes, side by side, in one run,
# on one rootfs (the python:3.11 image of the state directory):
#   host fork+exec   /bin/true, python3 -c pass            (the floor)
#   sbx run          build/sbx run --image python:3.11 -- PROGRAM
#   bwrap            --unshare-all --die-with-parent --ro-bind ROOTFS / ... PROGRAM
#   crun run         OCI bundle, root.path=ROOTFS read-only, user namespace, cgroups
# Each command is timed by `hyperfine -N` (no shell); bench/report.py prints median, p90,
# p99, min, max and the ratio of the median to the host fork+exec of the same program.
# Peers that are missing or fail a first run are reported as skipped. Times are printed,
# never asserted.
#
# Environment: SBX_STATE_DIR (default /var/lib/sbx), BENCH_RUNS (50), BENCH_WARMUP (3),
# BENCH_JSON_DIR (keep hyperfine's JSON exports there).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${BENCH_RUNS:-50}
WARMUP=${BENCH_WARMUP:-3}
export SBX_STATE_DIR=${SBX_STATE_DIR:-/var/lib/sbx}
SBX=$ROOT/build/sbx
ROOTFS=$SBX_STATE_DIR/images/python-3.11/rootfs
PROGRAMS=("/bin/true" "python3 -c pass")
HOST_CMD=("/bin/true" "/usr/bin/python3 -c pass")
KEYS=(true py)

log() { echo "bench: $*" >&2; }

# hyperfine -N splits a command at whitespace: the paths must have none.
if [[ "$ROOT$SBX_STATE_DIR" =~ [[:space:]] ]]; then
  log "paths with whitespace are not supported: '$ROOT' '$SBX_STATE_DIR'"
  exit 2
fi

# try NAME PROGRAM BASELINE META_FILE HYPERFINE_ARRAY CMD...: run the command once; on
# success queue it for hyperfine, else record it as skipped with the last line of stderr.
try() {
  local name=$1 program=$2 base=$3 meta=$4 arr=$5
  shift 5
  local err rc=0
  err=$(timeout 300 "$@" </dev/null 2>&1 >/dev/null) || rc=$?
  if [ "$rc" -eq 0 ]; then
    printf '%s\t%s\t%s\tok\t\n' "$name" "$program" "$base" >>"$meta"
    eval "$arr+=(-n \"\$name\" \"\$*\")"
  else
    err=$(printf '%s' "$err" | tail -n 1 | tr '\t' ' ' | cut -c1-160)
    printf '%s\t%s\t%s\tskipped\tfirst run failed (exit %s): %s\n' \
      "$name" "$program" "$base" "$rc" "$err" >>"$meta"
  fi
}

skip() { printf '%s\t%s\t%s\tskipped\t%s\n' "$1" "$2" "$3" "$4" >>"$5"; }

run_hyperfine() { # JSON_OUT ARGS...
  local out=$1
  shift
  [ $# -gt 0 ] || return 0
  hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style basic --export-json "$out" "$@" >&2
}

# ---- crun phase: runs in a private mount namespace (see below) ----------------------
if [ "${1:-}" = "--crun-phase" ]; then
  WORK=$2
  META=$WORK/meta-crun.tsv
  : >"$META"
  # crun 1.8 refuses hybrid hosts whose cgroup2 mount has controllers ("cgroups in hybrid
  # mode not supported"). Here, and only in this private mount namespace, the cgroup2
  # mount is hidden so crun uses the v1 controllers, as sbx does on such a host.
  if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null \
     && [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
    umount /sys/fs/cgroup/unified
  fi
  CRUN_ARGS=()
  for i in "${!PROGRAMS[@]}"; do
    key=${KEYS[$i]}
    bundle=$WORK/crun-$key
    # shellcheck disable=SC2086 # the program is split into its argv on purpose
    python3 "$ROOT/bench/oci_config.py" "$bundle" "$ROOTFS" "/sbx-bench-$$-$key" ${PROGRAMS[$i]}
    try "crun run: ${PROGRAMS[$i]}" "${PROGRAMS[$i]}" "host: ${PROGRAMS[$i]}" "$META" CRUN_ARGS \
      crun --root "$WORK/crun-state" run --bundle "$bundle" "sbxbench-$$-$key"
  done
  run_hyperfine "$WORK/crun.json" "${CRUN_ARGS[@]}"
  exit 0
fi

# ---- main ----------------------------------------------------------------------------
command -v hyperfine >/dev/null || { log "hyperfine is not installed (scripts/install-deps.sh)"; exit 1; }
WORK=$(mktemp -d /tmp/sbx-bench.XXXXXX)
cleanup() {
  if [ -d "$WORK/crun-state" ]; then
    for id in "$WORK"/crun-state/*/; do
      [ -d "$id" ] && crun --root "$WORK/crun-state" delete -f "$(basename "$id")" 2>/dev/null || true
    done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
META=$WORK/meta.tsv
: >"$META"

# The image: `sbx run` builds it on first use (about 30 s, once).
sbx_reason=""
if [ ! -x "$SBX" ]; then
  sbx_reason="build/sbx is not built"
else
  log "making sure image python:3.11 is built (state dir $SBX_STATE_DIR)"
  if ! "$SBX" run --image python:3.11 -- /bin/true </dev/null >/dev/null 2>"$WORK/sbx.err"; then
    sbx_reason="sbx run failed: $(tail -n 1 "$WORK/sbx.err" | cut -c1-160)"
  fi
fi
rootfs_reason=""
[ -d "$ROOTFS/usr" ] || rootfs_reason="no image rootfs at $ROOTFS (sbx run builds it)"

MAIN_ARGS=()
for i in "${!PROGRAMS[@]}"; do
  p=${PROGRAMS[$i]}
  base="host: $p"
  # shellcheck disable=SC2086
  try "$base" "$p" "$base" "$META" MAIN_ARGS ${HOST_CMD[$i]}
  if [ -n "$sbx_reason" ]; then
    skip "sbx run: $p" "$p" "$base" "$sbx_reason" "$META"
  else
    # shellcheck disable=SC2086
    try "sbx run: $p" "$p" "$base" "$META" MAIN_ARGS "$SBX" run --image python:3.11 -- $p
  fi
  if ! command -v bwrap >/dev/null; then
    skip "bwrap: $p" "$p" "$base" "bwrap is not installed" "$META"
  elif [ -n "$rootfs_reason" ]; then
    skip "bwrap: $p" "$p" "$base" "$rootfs_reason" "$META"
  else
    # shellcheck disable=SC2086
    try "bwrap: $p" "$p" "$base" "$META" MAIN_ARGS bwrap --unshare-all --die-with-parent \
      --ro-bind "$ROOTFS" / --proc /proc --dev /dev --tmpfs /tmp $p
  fi
done

log "timing host, sbx and bwrap ($RUNS runs each after $WARMUP warm-ups)"
run_hyperfine "$WORK/main.json" "${MAIN_ARGS[@]}"

if ! command -v crun >/dev/null; then
  for p in "${PROGRAMS[@]}"; do skip "crun run: $p" "$p" "host: $p" "crun is not installed" "$META"; done
elif [ -n "$rootfs_reason" ]; then
  for p in "${PROGRAMS[@]}"; do skip "crun run: $p" "$p" "host: $p" "$rootfs_reason" "$META"; done
elif [ "$(id -u)" -ne 0 ]; then
  for p in "${PROGRAMS[@]}"; do skip "crun run: $p" "$p" "host: $p" "needs root" "$META"; done
else
  log "timing crun"
  unshare -m --propagation private "$ROOT/bench/run.sh" --crun-phase "$WORK"
  cat "$WORK/meta-crun.tsv" >>"$META"
fi

if [ -n "${BENCH_JSON_DIR:-}" ]; then
  mkdir -p "$BENCH_JSON_DIR"
  cp "$WORK"/*.json "$BENCH_JSON_DIR"/ 2>/dev/null || true
fi

echo
echo "sbx bench: one-shot sandbox start-up, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "host: $(uname -sr), $(nproc) CPUs; $(hyperfine --version)" \
  "$(command -v bwrap >/dev/null && bwrap --version)" \
  "$(command -v crun >/dev/null && crun --version | head -n 1)"
echo "rootfs (all sandboxes): $ROOTFS"
echo
python3 "$ROOT/bench/report.py" "$META" "$WORK/main.json" "$WORK/crun.json"
