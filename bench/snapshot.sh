#!/bin/bash
# bench/snapshot.sh: snapshots and forks through a real sbxd, printed as a table:
#   - snapshot time (the API call: freeze, copy the writable layer, thaw, record) for a
#     sandbox holding 10 MB and 1 GB of new files;
#   - create time from that snapshot vs. from the built-in image, same run (median of N);
#   - disk used by 100 sandboxes made from one snapshot (layer store, and each sandbox's
#     own writable layer), next to what a full copy per sandbox would take.
# Times are printed, never asserted.
#
# Environment: SBX_STATE_DIR (images are taken from $SBX_STATE_DIR/images, default
# /var/lib/sbx), BENCH_CREATES (creates per median, 9), BENCH_FORKS (100), SBXD (binary).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export SBX_STATE_DIR=${SBX_STATE_DIR:-/var/lib/sbx}
SBXD=${SBXD:-$ROOT/build/sbxd}
STATE=$(mktemp -d /tmp/sbx-bench-snap.XXXXXX)
PORT=$((20000 + RANDOM % 20000))
mkdir -p "$SBX_STATE_DIR/images"
ln -s "$SBX_STATE_DIR/images" "$STATE/images"
"$SBXD" --listen 127.0.0.1:$PORT --state-dir "$STATE" --init "$ROOT/build/sbx-init" \
  --max-sandboxes 256 --log-level warn >"$STATE/sbxd.log" 2>&1 &
SBXD_PID=$!
cleanup() {
  kill "$SBXD_PID" 2>/dev/null || true
  wait "$SBXD_PID" 2>/dev/null || true
  # the sandboxes were terminated by the driver; nothing of them is left to find here
  rm -rf "$STATE"
}
trap cleanup EXIT

URL=http://127.0.0.1:$PORT/v1 STATE=$STATE CREATES=${BENCH_CREATES:-9} \
FORKS=${BENCH_FORKS:-100} /usr/bin/python3 - <<'EOF'
import json, os, statistics, subprocess, time, urllib.request

URL, STATE = os.environ["URL"], os.environ["STATE"]
CREATES, FORKS = int(os.environ["CREATES"]), int(os.environ["FORKS"])


def call(method, path, body=None, timeout=600):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: {e.code} {e.read()[:300]!r}")
    return out, (time.monotonic() - t0) * 1000


for _ in range(600):
    try:
        call("GET", "/health")
        break
    except Exception:
        time.sleep(0.1)

live = []


def create(**body):
    out, ms = call("POST", "/sandbox/create", body)
    live.append(out["sandbox_id"])
    return out["sandbox_id"], ms


def sh(sid, cmd):
    out, _ = call("POST", "/sandbox/exec", {"sandbox_id": sid, "command": ["/bin/sh", "-c", cmd]})
    assert out["exit_code"] == 0, out
    return out["stdout"]


def terminate_all():
    for sid in live:
        try:
            call("POST", "/sandbox/terminate", {"sandbox_id": sid})
        except SystemExit:
            pass
    live.clear()


def du(path):
    return int(subprocess.run(["du", "-sb", "--apparent-size", path], capture_output=True,
                              text=True).stdout.split()[0]) if os.path.exists(path) else 0


def disk(path):
    return int(subprocess.run(["du", "-s", "-B1", path], capture_output=True,
                              text=True).stdout.split()[0]) if os.path.exists(path) else 0


rows = []
base_ms = []
for _ in range(CREATES):
    sid, ms = create(image="python:3.11")
    base_ms.append(ms)
terminate_all()
base_med = statistics.median(base_ms)

for label, files, mb in (("10 MB", 10, 1), ("1 GB", 1000, 1)):
    src, _ = create(image="python:3.11", memory=4096)
    # files of 1,000,000 random bytes each
    sh(src, f"mkdir /data && for i in $(seq 1 {files}); do "
            f"head -c {mb * 1000000} /dev/urandom > /data/f$i; done")
    out, snap_ms = call("POST", "/sandbox/snapshot", {"sandbox_id": src})
    img = out["image_id"]
    info, _ = call("GET", f"/image/{img}")
    times = []
    for _ in range(CREATES):
        sid, ms = create(image=img)
        times.append(ms)
    check = sh(live[-1], "ls /data | wc -l; du -sb /data | cut -f1")
    terminate_all()
    med = statistics.median(times)
    rows.append((label, snap_ms, out["frozen_ms"], info["bytes"], med, med / base_med,
                 check.split()))

print()
print("| filesystem | snapshot (API) ms | sandbox frozen ms | layer on disk | create from snapshot, median ms | x create from image |")
print("|---|---:|---:|---:|---:|---:|")
for label, snap_ms, srv_ms, lb, med, ratio, chk in rows:
    print(f"| {label} ({chk[0]} files, {int(chk[1]) / 1e6:.0f} MB seen in a new sandbox) "
          f"| {snap_ms:.0f} | {srv_ms:.1f} | {lb / 1e6:.1f} MB | {med:.1f} | {ratio:.2f} |")
print(f"\ncreate from the built-in image python:3.11, median of {CREATES}: {base_med:.1f} ms")

# 100 forks of one snapshot
src, _ = create(image="python:3.11")
sh(src, "mkdir /data && head -c 10000000 /dev/urandom > /data/blob")
layers_before = disk(os.path.join(STATE, "layers"))
out, _ = call("POST", "/sandbox/snapshot", {"sandbox_id": src})
img = out["image_id"]
t0 = time.monotonic()
ids = []
left = FORKS
while left:
    n = min(left, 64)
    f, _ = call("POST", "/sandbox/fork", {"sandbox_id": src, "count": n})
    ids += [s["sandbox_id"] for s in f["sandboxes"]]
    left -= n
live += ids
fork_s = time.monotonic() - t0
layers_after = disk(os.path.join(STATE, "layers"))
# each fork's writable layer: what its root's filesystem (the scratch tmpfs) holds
used = [int(sh(s, "df -B1 --output=used / | tail -1")) for s in ids]
base_size = disk(os.path.join(STATE, "images", "python-3.11", "rootfs"))
terminate_all()
print()
print(f"| {FORKS} forks of one snapshot (10 MB of new files) | bytes |")
print("|---|---:|")
print(f"| layer store growth (snapshot layers, shared by all forks) | {(layers_after - layers_before) / 1e6:.1f} MB |")
print(f"| writable layers of the {FORKS} forks (tmpfs, sum) | {sum(used) / 1e6:.1f} MB |")
print(f"| a full copy per fork would be ({FORKS} x (image + 10 MB)) | {FORKS * (base_size + 10e6) / 1e9:.1f} GB |")
print(f"\n{FORKS} forks (snapshot + creates) took {fork_s:.2f} s")
EOF
