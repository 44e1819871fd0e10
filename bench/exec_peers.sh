#!/bin/bash
# bench/exec_peers.sh WORK ROOTFS RUNS WARMUP: the peers of sbx's exec round trip, timed by
# `hyperfine -N` in one invocation: entering a running sandbox to run /bin/true with
#   crun exec         into a running `crun run --detach` container (bench/oci_config.py)
#   nsenter -a        into a running `bwrap --unshare-all` sandbox
#   nsenter -a        into a running `unshare -Urpfmniu` + chroot sandbox
# and plain fork+exec of /bin/true on the host (the floor). Writes WORK/peers.json
# (hyperfine's export) and WORK/peers-meta.tsv (name, status, note) for bench/api.py.
# Everything it starts is ended before it exits. Called by bench/api.py; runs itself in a
# private mount namespace (see the crun note in bench/run.sh).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" != "--inner" ]; then
  exec unshare -m --propagation private "$0" --inner "$@"
fi
shift
WORK=$1 ROOTFS=$2 RUNS=$3 WARMUP=$4
META=$WORK/peers-meta.tsv
: >"$META"
ARGS=(-n "host: /bin/true" /bin/true)
printf 'host: /bin/true\tok\t\n' >>"$META"
CID=sbxbench-exec-$$
PIDS=()  # bwrap and unshare started here
INNER=() # the sleep inside each

cleanup() {
  crun --root "$WORK/crun-state" delete -f "$CID" >/dev/null 2>&1 || true
  # The sandboxes' own processes first: `unshare -f` ignores SIGTERM while it waits.
  for p in "${INNER[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK/crun-state" "$WORK/crun-exec" "$WORK/crun-run.err"
}
trap cleanup EXIT

skip() { printf '%s\tskipped\t%s\n' "$1" "$2" >>"$META"; }

# try NAME CMD...: one run first; queue it for hyperfine if it works.
try() {
  local name=$1 err rc=0
  shift
  err=$(timeout 60 "$@" </dev/null 2>&1 >/dev/null) || rc=$?
  if [ "$rc" -eq 0 ]; then
    printf '%s\tok\t\n' "$name" >>"$META"
    ARGS+=(-n "$name" "$*")
  else
    skip "$name" "first run failed (exit $rc): $(printf '%s' "$err" | tail -n 1 | cut -c1-160)"
  fi
}

# descendant PID COMM: the first process under PID (depth first) whose comm is COMM.
descendant() {
  local kid
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] && { echo "$1"; return 0; }
  for kid in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    descendant "$kid" "$2" && return 0
  done
  return 1
}

# wait_for PID COMM: up to 5 s for the sandbox's sleep to appear.
wait_for() {
  local i pid
  for i in $(seq 100); do
    pid=$(descendant "$1" "$2") && { echo "$pid"; return 0; }
    sleep 0.05
  done
  return 1
}

# crun 1.8 refuses this hybrid host unless the cgroup2 mount is hidden (bench/run.sh).
if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null \
   && [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
  umount /sys/fs/cgroup/unified
fi

if ! command -v crun >/dev/null; then
  skip "crun exec: /bin/true" "crun is not installed"
else
  python3 "$HERE/oci_config.py" "$WORK/crun-exec" "$ROOTFS" "/$CID" sleep infinity
  # Not through $(...): the detached container would hold the pipe open for ever.
  if crun --root "$WORK/crun-state" run --detach --bundle "$WORK/crun-exec" "$CID" \
       </dev/null >/dev/null 2>"$WORK/crun-run.err"; then
    try "crun exec: /bin/true" crun --root "$WORK/crun-state" exec "$CID" /bin/true
  else
    skip "crun exec: /bin/true" "crun run --detach failed: $(tail -n 1 "$WORK/crun-run.err")"
  fi
fi

if ! command -v bwrap >/dev/null; then
  skip "nsenter -a into bwrap: /bin/true" "bwrap is not installed"
else
  bwrap --unshare-all --die-with-parent --ro-bind "$ROOTFS" / --proc /proc --dev /dev \
    --tmpfs /tmp sleep infinity </dev/null >/dev/null 2>&1 &
  PIDS+=($!)
  if pid=$(wait_for "$!" sleep); then
    INNER+=("$pid")
    try "nsenter -a into bwrap: /bin/true" nsenter -t "$pid" -a -r -w /bin/true
  else
    skip "nsenter -a into bwrap: /bin/true" "the bwrap sandbox did not start"
  fi
fi

unshare -Urpfmniu chroot "$ROOTFS" sleep infinity \
  </dev/null >/dev/null 2>&1 &
PIDS+=($!)
if pid=$(wait_for "$!" sleep); then
  INNER+=("$pid")
  try "nsenter -a into unshare: /bin/true" nsenter -t "$pid" -a -r -w /bin/true
else
  skip "nsenter -a into unshare: /bin/true" "the unshare sandbox did not start"
fi

hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style basic \
  --export-json "$WORK/peers.json" "${ARGS[@]}" >&2
