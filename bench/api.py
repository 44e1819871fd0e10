#!/usr/bin/env python3
"""sbxd API benchmarks: latency, throughput and density against a real sbxd.

usage: bench/api.py [OPTIONS] latency|throughput|density|all

Starts build/sbxd on a free loopback port with its own state directory (a temporary
directory whose images/ is a symlink to an existing image cache), drives it with
HTTP/1.1 keep-alive clients (http.client, one connection per client thread), prints
tables, then terminates every sandbox it made, stops sbxd and removes the state
directory. Times are printed, never asserted. Needs root (sbxd does). Standard library
only.

  latency     create alone; create + first exec of /bin/true (create -> ready); exec round
              trip of /bin/true in a running sandbox; terminate; GET /v1/health (the
              HTTP + client floor); side by side with `crun exec` and `nsenter -a` into
              running crun / bwrap / unshare sandboxes and plain fork+exec of /bin/true,
              timed by hyperfine -N in the same run (bench/exec_peers.sh). With
              --pool-args, the sbxd rows are measured twice: cold, and from a second sbxd
              started with those extra arguments (e.g. a warm pool option).
  throughput  create + exec /bin/true + terminate cycles with 1, 2, 8, 32 concurrent
              clients (--clients), --cycles cycles per level: cycles/s and cycle latency.
  density     N idle sandboxes (--n, default 1000) started through sbxd with
              --max-sandboxes N by --parallel clients: time to start them all, memory per
              sandbox (kernel vs user), then all terminated: time until everything is
              gone, and a check that nothing is left (cgroups, run dirs, processes).
              --daemons K spreads them over K sbxd (to tell a per-process limit of
              sbxd from a limit of the host).
  all         latency, throughput and density (density with --n).
"""
import argparse
import http.client
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from report import quantile  # noqa: E402

CGROOT = "/sys/fs/cgroup"


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---- HTTP client ----------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


class Client:
    """One keep-alive connection; reconnects once if the server closed it."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def _connect(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, method, path, obj=None):
        body = None if obj is None else json.dumps(obj).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt:
                    raise
        if resp.status != 200:
            raise ApiError(resp.status, data.decode(errors="replace"))
        return json.loads(data)

    def create(self, **fields):
        return self.call("POST", "/v1/sandbox/create", fields)["sandbox_id"]

    def created_by_source(self):
        """{"pool": n, "cold": n}: creates so far, from GET /v1/metrics."""
        self.conn.request("GET", "/v1/metrics")
        text = self.conn.getresponse().read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("sbx_create_duration_seconds_count{source="):
                out[line.split('"')[1]] = int(float(line.split()[-1]))
        return out

    def exec(self, sid, argv):
        r = self.call("POST", "/v1/sandbox/exec", {"sandbox_id": sid, "command": argv})
        if r.get("exit_code") != 0:
            raise ApiError(200, f"exit_code {r.get('exit_code')}: {r.get('stderr', '')}")
        return r

    def terminate(self, sid):
        return self.call("POST", "/v1/sandbox/terminate", {"sandbox_id": sid})

    def health(self):
        return self.call("GET", "/v1/health")

    def post_floor(self):
        """A POST with a JSON body that sbxd answers at once (status of an id it does not
        know, a 404): the HTTP and client cost of one create or exec call."""
        try:
            self.call("POST", "/v1/sandbox/status", {"sandbox_id": "sb_00000000000000000000"})
        except ApiError as e:
            if e.status != 404:
                raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---- sbxd under test ------------------------------------------------------------------

def find_images(explicit):
    """An image cache that has the python:3.11 rootfs; build one with sbx run if none."""
    cands = [explicit] if explicit else []
    if os.environ.get("SBX_STATE_DIR"):
        cands.append(os.path.join(os.environ["SBX_STATE_DIR"], "images"))
    cands += ["/var/lib/sbx/images", "/var/lib/sbx-test/images"]
    for c in cands:
        if c and os.path.isdir(os.path.join(c, "python-3.11", "rootfs", "usr")):
            return os.path.realpath(c)
    state = os.environ.get("SBX_STATE_DIR", "/var/lib/sbx")
    log(f"no image cache found; building python:3.11 in {state} with sbx run (once)")
    subprocess.run([os.path.join(ROOT, "build", "sbx"), "run", "--state-dir", state,
                    "--image", "python:3.11", "--", "/bin/true"],
                   stdin=subprocess.DEVNULL, check=True)
    return os.path.realpath(os.path.join(state, "images"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile():
    """sbxd holds several fds per sandbox: give it (and us) the system's ceiling."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            cap = int(f.read())
    except OSError:
        cap = 1 << 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(hard, min(cap, 1 << 20))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Sbxd:
    """build/sbxd on a free loopback port with a private state directory."""

    def __init__(self, images, max_sandboxes, extra_args=()):
        self.images = images
        self.max = max_sandboxes
        self.extra = list(extra_args)
        self.proc = None
        self.state = None
        self.port = None
        self.made = set()  # ids of sandboxes created (for the leftover check)

    def start(self):
        self.state = tempfile.mkdtemp(prefix="sbx-bench-state.")
        os.symlink(self.images, os.path.join(self.state, "images"))
        self.port = free_port()
        self.log = open(os.path.join(self.state, "sbxd.log"), "wb")
        cmd = [os.path.join(ROOT, "build", "sbxd"), "--listen", f"127.0.0.1:{self.port}",
               "--state-dir", self.state, "--no-prepare-image", "--log-level", "warn",
               "--max-sandboxes", str(self.max),
               # sbxd keeps a small warm pool by default: cold rows run without one, and
               # --pool-args (later on the line, so they win) turn it on
               "--pool-size", "0"] + self.extra
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        c = Client(self.port)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sbxd exited ({self.proc.returncode}): {self.tail()}")
            try:
                c.health()
                break
            except (OSError, http.client.HTTPException):
                c.close()
                if time.monotonic() > deadline:
                    raise RuntimeError("sbxd did not answer /v1/health within 30 s")
                time.sleep(0.02)
        c.close()
        return self

    def tail(self):
        try:
            with open(os.path.join(self.state, "sbxd.log"), "rb") as f:
                return f.read()[-600:].decode(errors="replace")
        except OSError:
            return ""

    def client(self):
        return Client(self.port)

    def running_ids(self):
        c = self.client()
        try:
            r = c.call("GET", "/v1/sandbox/list?status=running")
        finally:
            c.close()
        return [s["sandbox_id"] for s in r.get("sandboxes", [])]

    def leftovers(self, ids):
        """What is still on the host of these sandboxes: cgroup dirs, run dirs, tasks."""
        cg, run, tasks = 0, 0, 0
        ctrls = [d for d in os.listdir(CGROOT) if os.path.isdir(os.path.join(CGROOT, d, "sbx"))]
        for sid in ids:
            for ctrl in ctrls:
                d = os.path.join(CGROOT, ctrl, "sbx", sid)
                if os.path.isdir(d):
                    cg += 1
                    try:
                        with open(os.path.join(d, "cgroup.procs")) as f:
                            tasks += len(f.read().split())
                    except OSError:
                        pass
            if os.path.exists(os.path.join(self.state, "run", sid)):
                run += 1
        return cg, run, tasks

    def wait_gone(self, ids, timeout=600):
        """Until none of ids has a cgroup or run dir left; returns the seconds it took."""
        t0 = time.monotonic()
        while True:
            cg, run, _ = self.leftovers(ids)
            if cg == 0 and run == 0:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                return None
            time.sleep(0.05)

    def stop(self):
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                ids = self.running_ids()
                if ids:
                    log(f"terminating {len(ids)} sandboxes left running")
                    parallel_terminate(self, ids, 8)
                self.wait_gone(self.made, timeout=120)
        except Exception as e:  # cleanup goes on whatever happened
            log(f"cleanup: {e}")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        left = self.leftovers(self.made)
        if any(left):
            log(f"left behind (cgroup dirs, run dirs, tasks): {left}; state dir kept: "
                f"{self.state}")
        else:
            os.unlink(os.path.join(self.state, "images"))
            shutil.rmtree(self.state, ignore_errors=True)
        self.proc = None


def parallel_terminate(sbxd, ids, nthreads, clients=None):
    """Terminate ids over nthreads connections (clients, if given, are used and kept)."""
    ids = list(ids)
    lock = threading.Lock()
    errors = []

    def worker(c):
        try:
            while True:
                with lock:
                    if not ids:
                        return
                    sid = ids.pop()
                try:
                    c.terminate(sid)
                except ApiError as e:
                    if e.status not in (408, 410):
                        errors.append(f"{sid}: {e}")
                except (OSError, http.client.HTTPException) as e:
                    errors.append(f"{sid}: {type(e).__name__}: {e}")
                    c.close()
        finally:
            if clients is None:
                c.close()

    cs = clients or [sbxd.client() for _ in range(nthreads)]
    ts = [threading.Thread(target=worker, args=(c,)) for c in cs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


# ---- statistics and tables --------------------------------------------------------------

def summary(ms):
    return {"median": statistics.median(ms), "p90": quantile(ms, 0.9),
            "p99": quantile(ms, 0.99), "min": min(ms), "max": max(ms), "runs": len(ms)}


def print_table(head, rows, right_from=1):
    rows = [tuple(str(c) for c in r) if r is not None else None for r in rows]
    widths = [max(len(head[i]), *(len(r[i]) for r in rows if r)) for i in range(len(head))]

    def fmt(r):
        return "  ".join([r[i].ljust(widths[i]) if i < right_from else r[i].rjust(widths[i])
                          for i in range(len(r))]).rstrip()

    print(fmt(head))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("" if r is None else fmt(r))


def latency_row(name, ms, base):
    s = summary(ms)
    ratio = f"{s['median'] / base:.1f}" if base else "-"
    return (name, f"{s['median']:.2f}", f"{s['p90']:.2f}", f"{s['p99']:.2f}",
            f"{s['min']:.2f}", f"{s['max']:.2f}", s["runs"], ratio)


LAT_HEAD = ("operation", "median", "p90", "p99", "min", "max", "runs", "× fork+exec")

# ---- latency ------------------------------------------------------------------------------

def timed(fn, *a):
    t0 = time.perf_counter()
    r = fn(*a)
    return r, (time.perf_counter() - t0) * 1e3


def measure_sbxd(sbxd, runs, warmup, pause):
    """{row name: [ms]} for the API operations of one sbxd."""
    c = sbxd.client()
    out = {k: [] for k in ("health", "floor", "create", "ready", "first", "exec", "exec_paused",
                           "terminate")}
    out["sources"] = {}
    try:
        for i in range(warmup + runs):
            _, t = timed(c.health)
            if i >= warmup:
                out["health"].append(t)
        # The same POST floor after the same pause as the creates: an idle vCPU wakes
        # slowly on a VM, and that is in every create row too.
        for i in range(warmup + runs):
            if pause:
                time.sleep(pause)
            _, t = timed(c.post_floor)
            if i >= warmup:
                out["floor"].append(t)
        for i in range(warmup + runs):
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            sid = c.create()
            t1 = time.perf_counter()
            sbxd.made.add(sid)
            c.exec(sid, ["/bin/true"])
            t2 = time.perf_counter()
            _, tt = timed(c.terminate, sid)
            if i >= warmup:
                out["create"].append((t1 - t0) * 1e3)
                out["ready"].append((t2 - t0) * 1e3)
                out["first"].append((t2 - t1) * 1e3)
                out["terminate"].append(tt)
        out["sources"] = c.created_by_source()
        sbxd.wait_gone(sbxd.made)
        sid = c.create()
        sbxd.made.add(sid)
        for i in range(warmup + runs):
            _, t = timed(c.exec, sid, ["/bin/true"])
            if i >= warmup:
                out["exec"].append(t)
        # The first exec after a create comes after the pause before it. After such a pause
        # the CPU caches are cold (on this shared VM other work evicts the last-level cache
        # within 5-20 ms), and an exec in a running sandbox pays that too: this row is the
        # fair baseline of "first exec after create".
        for i in range(warmup + runs if pause else 0):
            time.sleep(pause)
            _, t = timed(c.exec, sid, ["/bin/true"])
            if i >= warmup:
                out["exec_paused"].append(t)
        c.terminate(sid)
    finally:
        c.close()
    return out


def run_peers(runs, warmup, rootfs):
    """hyperfine results of bench/exec_peers.sh: ({name: [ms]}, [(name, note)])."""
    work = tempfile.mkdtemp(prefix="sbx-bench-peers.")
    try:
        p = subprocess.run([os.path.join(HERE, "exec_peers.sh"), work, rootfs, str(runs),
                            str(warmup)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=900)
        res, skipped = {}, []
        try:
            with open(os.path.join(work, "peers.json")) as f:
                for r in json.load(f).get("results", []):
                    res[r["command"]] = [t * 1e3 for t in r["times"]]
        except (OSError, ValueError):
            skipped.append(("peers", "hyperfine failed: " +
                            p.stderr.decode(errors="replace").strip()[-200:]))
        try:
            with open(os.path.join(work, "peers-meta.tsv")) as f:
                for line in f:
                    name, status, note = (line.rstrip("\n").split("\t") + ["", ""])[:3]
                    if status != "ok":
                        skipped.append((name, note))
        except OSError:
            pass
        return res, skipped
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cmd_latency(args, images):
    rootfs = os.path.join(images, "python-3.11", "rootfs")
    log(f"latency: peers (crun exec, nsenter) and fork+exec, {args.runs} runs each")
    peers, skipped = run_peers(args.runs, args.warmup, rootfs)
    variants = [("cold", [])]
    if args.pool_args is not None:
        variants.append(("pool", args.pool_args.split()))
    sbx = {}
    for label, extra in variants:
        log(f"latency: sbxd ({label}{': ' + ' '.join(extra) if extra else ''}), "
            f"{args.runs} runs each")
        d = Sbxd(images, 4096, extra).start()
        try:
            if extra and args.pool_settle:
                time.sleep(args.pool_settle)
            pause = args.pause_ms if label == "cold" else max(args.pause_ms, args.pool_pause_ms)
            sbx[label] = measure_sbxd(d, args.runs, args.warmup, pause / 1e3)
        finally:
            d.stop()
    base_ms = peers.get("host: /bin/true")
    base = statistics.median(base_ms) if base_ms else None
    rows = []
    if base_ms:
        rows.append(latency_row("fork+exec /bin/true (hyperfine -N)", base_ms, base))
    for label, out in sbx.items():
        tag = f"sbxd {label}" if len(sbx) > 1 else "sbxd"
        rows += [None,
                 latency_row("GET /v1/health (HTTP + client floor)", out["health"], base),
                 latency_row("POST, answered at once, same pause (floor)", out["floor"], base),
                 latency_row(f"{tag}: create", out["create"], base),
                 latency_row(f"{tag}: create + first exec /bin/true", out["ready"], base),
                 latency_row(f"{tag}:   first exec after create", out["first"], base),
                 latency_row(f"{tag}: exec /bin/true (running sandbox)", out["exec"], base)]
        if out["exec_paused"]:
            rows.append(latency_row(f"{tag}: exec /bin/true (running, same pause)",
                                    out["exec_paused"], base))
        rows.append(latency_row(f"{tag}: terminate", out["terminate"], base))
    rows.append(None)
    for name in ("crun exec: /bin/true", "nsenter -a into bwrap: /bin/true",
                 "nsenter -a into unshare: /bin/true"):
        if name in peers:
            rows.append(latency_row(name, peers[name], base))
    print()
    print(f"sbx bench-api: latency, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    print(f"host: {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs; "
          f"image python:3.11 ({rootfs})")
    print("times in ms; sbxd rows: one keep-alive HTTP/1.1 connection (Python http.client), "
          "sequential; peers and fork+exec: hyperfine -N")
    print_table(LAT_HEAD, rows)
    for name, note in skipped:
        print(f"note: {name}: skipped: {note}")
    if "pool" not in sbx:
        print("note: sbxd cold only (no --pool-args given)")
    else:
        src = sbx["pool"]["sources"]
        print(f"note: sbxd pool rows: {src.get('pool', 0)} of "
              f"{src.get('pool', 0) + src.get('cold', 0)} creates served by the pool "
              f"(pause {max(args.pause_ms, args.pool_pause_ms):g} ms before each create, "
              "--pool-pause-ms; a pool drained by back-to-back creates answers cold)")
    print()


# ---- throughput ---------------------------------------------------------------------------

def cycles(sbxd, nclients, ncycles):
    """ncycles create+exec+terminate cycles over nclients connections."""
    left = [ncycles]
    lock = threading.Lock()
    lat, errors = [], []
    start = threading.Barrier(nclients + 1)

    def worker():
        c = sbxd.client()
        c.health()  # connect before the clock starts
        mine = []
        start.wait()
        try:
            while True:
                with lock:
                    if left[0] == 0:
                        break
                    left[0] -= 1
                t0 = time.perf_counter()
                try:
                    sid = c.create()
                    with lock:
                        sbxd.made.add(sid)
                    c.exec(sid, ["/bin/true"])
                    c.terminate(sid)
                    mine.append((time.perf_counter() - t0) * 1e3)
                except (ApiError, OSError, http.client.HTTPException) as e:
                    with lock:
                        errors.append(str(e))
        finally:
            c.close()
            with lock:
                lat.extend(mine)

    ts = [threading.Thread(target=worker) for _ in range(nclients)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    drain = sbxd.wait_gone(sbxd.made)
    return wall, lat, errors, drain


def peer_rate(argv, nclients, count):
    """count runs of argv, nclients at a time (xargs -P): (runs/s, whether any failed)."""
    t0 = time.perf_counter()
    p = subprocess.run(["xargs", "-P", str(nclients), "-I{}", *argv],
                       input="\n".join(str(i) for i in range(count)) + "\n",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    wall = time.perf_counter() - t0
    return count / wall, p.returncode != 0


def peer_throughput(images, levels, count):
    """The same levels for whole one-shot sandboxes running /bin/true: the ceiling a host
    gives for namespaces alone (bwrap) next to sbx run's and a plain process's."""
    rootfs = os.path.join(images, "python-3.11", "rootfs")
    state = tempfile.mkdtemp(prefix="sbx-bench-run.")
    os.symlink(images, os.path.join(state, "images"))
    peers = [("fork+exec /bin/true", ["/bin/true"]),
             ("sbx run -- /bin/true", [os.path.join(ROOT, "build", "sbx"), "run",
                                       "--state-dir", state, "--", "/bin/true"])]
    if shutil.which("bwrap"):
        peers.insert(1, ("bwrap --unshare-all /bin/true",
                         ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", rootfs,
                          "/", "--proc", "/proc", "--dev", "/dev", "/bin/true"]))
    rows, notes = [], []
    try:
        for n in levels:
            log(f"throughput: peers, {count} runs each with {n} at a time")
            row = [n]
            for name, argv in peers:
                rate, failed = peer_rate(argv, n, count)
                row.append(f"{rate:.1f}")
                if failed:
                    notes.append(f"{name}, {n} at a time: some runs failed")
            rows.append(row)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    if not shutil.which("bwrap"):
        notes.append("bwrap: skipped (not installed)")
    return [name for name, _ in peers], rows, notes


def cmd_throughput(args, images):
    levels = [int(x) for x in args.clients.split(",")]
    d = Sbxd(images, max(4096, 2 * max(levels)), args.pool_args.split()
             if args.pool_args else []).start()
    rows, notes = [], []
    try:
        for n in levels:
            log(f"throughput: {args.cycles} cycles with {n} clients")
            wall, lat, errors, drain = cycles(d, n, args.cycles)
            ok = len(lat)
            s = summary(lat) if lat else None
            pct = ([f"{s[k]:.1f}" for k in ("median", "p90", "p99", "min", "max")]
                   if s else ["-"] * 5)
            rows.append((n, ok, len(errors), f"{wall:.2f}", f"{ok / wall:.1f}", *pct,
                         "-" if drain is None else f"{drain:.2f}"))
            if errors:
                notes.append(f"{n} clients: {len(errors)} errors, first: {errors[0]}")
    finally:
        d.stop()
    peer_names, peer_rows, peer_notes = peer_throughput(images, levels, min(args.cycles, 500))
    print()
    print(f"sbx bench-api: throughput, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    print(f"host: {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs; one cycle = "
          "create + exec /bin/true + terminate, each client its own keep-alive connection"
          + (f"; sbxd {args.pool_args}" if args.pool_args else ""))
    print("cycle latency in ms; drain s = after the last answer, until every cgroup and run "
          "dir of the level is gone (terminate answers before cleanup)")
    print_table(("clients", "cycles", "errors", "wall s", "cycles/s", "median", "p90", "p99",
                 "min", "max", "drain s"), rows)
    for n in notes:
        print(f"note: {n}")
    print()
    print("peers, same levels, measured after sbxd stopped: whole one-shot sandboxes per "
          "second (xargs -P clients; no HTTP, no exec into a running sandbox)")
    print_table(("clients", *peer_names), peer_rows)
    for n in peer_notes:
        print(f"note: {n}")
    print()


# ---- density ------------------------------------------------------------------------------

def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            out[k] = int(v.split()[0]) * 1024
    return out


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cgroup_memory(ids):
    """Sums over the sandboxes' memory cgroups (v1 names; v2 where v1 is absent)."""
    tot = {"usage": 0, "kmem": 0, "rss": 0, "shmem": 0, "cache": 0, "mapped_file": 0,
           "procs": 0, "n": 0}
    for sid in ids:
        m = os.path.join(CGROOT, "memory", "sbx", sid)
        if os.path.isdir(m):
            tot["usage"] += read_int(os.path.join(m, "memory.usage_in_bytes")) or 0
            tot["kmem"] += read_int(os.path.join(m, "memory.kmem.usage_in_bytes")) or 0
            try:
                with open(os.path.join(m, "memory.stat")) as f:
                    for line in f:
                        k, v = line.split()
                        if k in ("rss", "shmem", "cache", "mapped_file"):
                            tot[k] += int(v)
            except OSError:
                pass
            tot["n"] += 1
        p = read_int(os.path.join(CGROOT, "pids", "sbx", sid, "pids.current"))
        tot["procs"] += p or 0
    return tot


def limits():
    def rd(p):
        try:
            with open(p) as f:
                return f.read().strip()
        except OSError:
            return "?"
    return {
        "kernel.pid_max": rd("/proc/sys/kernel/pid_max"),
        "kernel.threads-max": rd("/proc/sys/kernel/threads-max"),
        "user.max_user_namespaces": rd("/proc/sys/user/max_user_namespaces"),
        "user.max_mnt_namespaces": rd("/proc/sys/user/max_mnt_namespaces"),
        "user.max_net_namespaces": rd("/proc/sys/user/max_net_namespaces"),
        "fs.inotify.max_user_instances": rd("/proc/sys/fs/inotify/max_user_instances"),
        "fs.mount-max": rd("/proc/sys/fs/mount-max"),
        "vm.max_map_count": rd("/proc/sys/vm/max_map_count"),
        "uid slots (RT_UID_SLOTS)": "16384",
    }


def slab_bytes():
    """Bytes in slab objects in use (/proc/slabinfo active objects times their size): unlike
    /proc/meminfo's Slab, it also sees objects taken from slabs that were already there."""
    total = 0
    with open("/proc/slabinfo") as f:
        for line in f.readlines()[2:]:
            p = line.split()
            total += int(p[1]) * int(p[3])
    return total


def empty_memcg_kib(n=50):
    """Kernel memory (slab objects in use plus Percpu, KiB) that one empty memory cgroup
    costs on this host, from n made and removed. Most of it is shrinker tables: one slot
    per superblock id the host has ever had at once since boot (each sandbox mounts five),
    in every memory cgroup, so it depends on the host's past, not on sbx."""
    v1 = os.path.isdir(f"{CGROOT}/memory")
    base = f"{CGROOT}/memory/sbx-bench-probe" if v1 else f"{CGROOT}/sbx-bench-probe"
    made = []
    try:
        os.mkdir(base)
        if not v1:
            with open(f"{CGROOT}/cgroup.subtree_control", "w") as f:
                f.write("+memory")
            with open(f"{base}/cgroup.subtree_control", "w") as f:
                f.write("+memory")
        s0, p0 = slab_bytes(), meminfo()["Percpu"]
        for i in range(n):
            os.mkdir(f"{base}/c{i}")
            made.append(f"{base}/c{i}")
        s1, p1 = slab_bytes(), meminfo()["Percpu"]
        return (s1 - s0 + p1 - p0) / n / 1024
    except OSError as e:
        log(f"density: empty memory cgroup probe failed: {e}")
        return None
    finally:
        for d in list(reversed(made)) + [base]:
            try:
                os.rmdir(d)
            except OSError:
                pass


def memcg_count():
    """Memory cgroups the kernel has, dying ones (removed, memory still charged) included."""
    try:
        with open("/proc/cgroups") as f:
            for line in f:
                p = line.split()
                if p[0] == "memory":
                    return int(p[2])
    except (OSError, IndexError, ValueError):
        pass
    return -1


def sum_status(daemons):
    """Threads, fds and RSS (bytes) summed over the sbxd processes."""
    th = fds = rss = 0
    for d in daemons:
        st = proc_status(d.proc.pid)
        th += int(st["Threads"])
        fds += st["fds"]
        rss += int(st["VmRSS"].split()[0]) * 1024
    return {"Threads": th, "fds": fds, "rss": rss}


def cmd_density(args, images):
    n, nd = args.n, max(1, args.daemons)
    par = max(args.parallel, nd)
    share = [n // nd + (1 if i < n % nd else 0) for i in range(nd)]
    daemons = []
    lim = limits()
    ids, errors = [], []  # ids: (daemon index, sandbox id)
    lock = threading.Lock()
    lat = []
    sample = []
    alive = 0
    new_conn = "-"
    memcg_kib = None
    try:
        for i in range(nd):
            daemons.append(Sbxd(images, share[i], args.pool_args.split()
                                if args.pool_args else []).start())
        nofile = resource.prlimit(daemons[0].proc.pid, resource.RLIMIT_NOFILE)[0]
        lim["sbxd RLIMIT_NOFILE"] = str(nofile)
        if max(share) * 3 + 64 > nofile:
            log(f"density: sbxd may run out of fds: it holds 2-3 per sandbox and "
                f"RLIMIT_NOFILE is {nofile} (raising the hard limit needs CAP_SYS_RESOURCE)")
        memcg_kib = empty_memcg_kib()
        time.sleep(0.5)
        st0, mi0 = sum_status(daemons), meminfo()
        log(f"density: starting {n} idle sandboxes with {par} clients over {nd} sbxd")
        todo = list(share)
        stop = threading.Event()

        # One connection per client thread, opened before any sandbox holds fds and kept
        # for create, the sample execs and terminate (see the FD_SETSIZE note below).
        conns = [daemons[i % nd].client() for i in range(par)]
        for c in conns:
            c.health()

        def creator(i):
            k = i % nd
            d = daemons[k]
            c = conns[i]
            mine = []
            try:
                while not stop.is_set():
                    with lock:
                        if todo[k] == 0:
                            break
                        todo[k] -= 1
                    t0 = time.perf_counter()
                    try:
                        sid = c.create(timeout=args.lifetime)
                    except (ApiError, OSError, http.client.HTTPException) as e:
                        with lock:
                            errors.append((len(ids), str(e)))
                        stop.set()
                        break
                    mine.append((time.perf_counter() - t0) * 1e3)
                    with lock:
                        ids.append((k, sid))
                        d.made.add(sid)
                        if len(ids) % 500 == 0:
                            marks.append((len(ids), time.perf_counter() - begin[0]))
                            log(f"density: {len(ids)} running")
            finally:
                with lock:
                    lat.extend(mine)

        marks = []
        cg0 = memcg_count()
        t0 = time.perf_counter()
        begin = [t0]
        ts = [threading.Thread(target=creator, args=(i,)) for i in range(par)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        t_start = time.perf_counter() - t0
        if not marks or marks[-1][0] != len(ids):
            marks.append((len(ids), t_start))
        log(f"density: {len(ids)} running after {t_start:.1f} s; settling 3 s")
        time.sleep(3)
        mi1, st1 = meminfo(), sum_status(daemons)
        cg = cgroup_memory([sid for _, sid in ids])
        # They are alive: an exec in a sample of them.
        sample = random.sample(ids, min(20, len(ids)))
        for k, sid in sample:
            c = conns[k]
            try:
                c.exec(sid, ["/bin/true"])
                alive += 1
            except (ApiError, OSError, http.client.HTTPException) as e:
                errors.append((len(ids), f"exec in {sid}: {e}"))
        # A new connection now: sbxd's HTTP server may refuse it once its fds pass 1024.
        probe = daemons[0].client()
        try:
            probe.health()
            new_conn = "accepted"
        except (ApiError, OSError, http.client.HTTPException) as e:
            new_conn = f"REFUSED ({type(e).__name__}: {e})"
        finally:
            probe.close()

        log(f"density: terminating {len(ids)}")
        t1 = time.perf_counter()
        terr = []
        tts = [threading.Thread(target=lambda k=k: terr.extend(parallel_terminate(
            daemons[k], [sid for j, sid in ids if j == k], 0,
            [c for i, c in enumerate(conns) if i % nd == k])))
            for k in range(nd)]
        for t in tts:
            t.start()
        for t in tts:
            t.join()
        t_term = time.perf_counter() - t1
        gone = 0
        for k in range(nd):
            g = daemons[k].wait_gone([sid for j, sid in ids if j == k])
            gone = None if g is None or gone is None else gone
        t_gone = time.perf_counter() - t1
        time.sleep(1)
        mi2, st2, cg2 = meminfo(), sum_status(daemons), memcg_count()
        left = [0, 0, 0]
        for k in range(nd):
            for i, v in enumerate(daemons[k].leftovers([sid for j, sid in ids if j == k])):
                left[i] += v
        left = tuple(left)
    finally:
        for c in locals().get("conns", []):
            c.close()
        for d in daemons:
            d.stop()

    k = len(ids) or 1
    KiB = 1024

    def delta(a, b, keys):
        return sum(b.get(x, 0) - a.get(x, 0) for x in keys)

    kern_keys = ("Slab", "KernelStack", "PageTables", "Percpu", "VmallocUsed")
    used = mi0["MemAvailable"] - mi1["MemAvailable"]
    kern = delta(mi0, mi1, kern_keys)
    rss0, rss1 = st0["rss"], st1["rss"]
    s = summary(lat) if lat else None
    print()
    print(f"sbx bench-density: {n} idle sandboxes requested, "
          f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    print(f"host: {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs, "
          f"{mi0['MemTotal'] // (1 << 20)} MiB; image python:3.11; {par} parallel clients; "
          f"{nd} sbxd{' (each --max-sandboxes ' + str(max(share)) + ')' if nd > 1 else ''}; "
          f"sandboxes idle (sbx-init only)")
    rows = [
        ("sandboxes running", f"{len(ids)} of {n}"),
        ("time to start them all", f"{t_start:.2f} s ({len(ids) / t_start:.0f}/s)"),
        ("start rate by block of 500",
         " ".join(f"{(b[0] - a[0]) / max(b[1] - a[1], 1e-9):.0f}/s" for a, b in
                  zip([(0, 0.0)] + marks, marks)) or "-"),
        ("create latency median / p90 / p99 / max",
         f"{s['median']:.1f} / {s['p90']:.1f} / {s['p99']:.1f} / {s['max']:.1f} ms" if s
         else "-"),
        ("exec /bin/true in a sample of them", f"{alive} of {len(sample)} ok"),
        ("a new HTTP connection with them running", new_conn),
        ("processes in their cgroups", f"{cg['procs']} ({cg['procs'] / k:.1f} each)"),
        (None, None),
        ("memory per sandbox (KiB)", ""),
        ("  MemAvailable drop (everything)", f"{used / k / KiB:.0f}"),
        ("  kernel: Slab+KernelStack+PageTables+Percpu+Vmalloc",
         f"{kern / k / KiB:.0f}  (Slab {delta(mi0, mi1, ('Slab',)) / k / KiB:.0f}: "
         f"unreclaimable {delta(mi0, mi1, ('SUnreclaim',)) / k / KiB:.0f}, "
         f"KernelStack {delta(mi0, mi1, ('KernelStack',)) / k / KiB:.0f}, "
         f"PageTables {delta(mi0, mi1, ('PageTables',)) / k / KiB:.0f}, "
         f"Percpu {delta(mi0, mi1, ('Percpu',)) / k / KiB:.0f}, "
         f"Vmalloc {delta(mi0, mi1, ('VmallocUsed',)) / k / KiB:.0f})"),
        ("  Shmem (tmpfs: upper layers, /tmp, /dev/shm)",
         f"{delta(mi0, mi1, ('Shmem',)) / k / KiB:.0f}"),
        ("  cgroup memory.usage_in_bytes (charged to it)", f"{cg['usage'] / k / KiB:.0f}"),
        ("    of which kmem (kernel objects charged)", f"{cg['kmem'] / k / KiB:.0f}"),
        ("    of which rss (its processes' anonymous)", f"{cg['rss'] / k / KiB:.0f}"),
        ("    of which cache (shmem "
         f"{cg['shmem'] / k / KiB:.0f}, mapped {cg['mapped_file'] / k / KiB:.0f})",
         f"{cg['cache'] / k / KiB:.0f}"),
        ("  sbxd RSS growth", f"{(rss1 - rss0) / k / KiB:.1f}"),
        ("  beyond its processes (drop minus cgroup rss)",
         f"{(used - cg['rss']) / k / KiB:.0f}"),
        ("  an empty memory cgroup here (slab in use+Percpu, 50 made)",
         "-" if memcg_kib is None else f"{memcg_kib:.0f}  (shrinker tables: sized by the "
         "most superblocks this host has had at once since boot)"),
        (None, None),
        ("sbxd threads / fds before, with them, after" + (" (summed)" if nd > 1 else ""),
         f"{st0['Threads']} / {st0['fds']}, {st1['Threads']} / {st1['fds']}, "
         f"{st2['Threads']} / {st2['fds']}"),
        ("terminate calls answered", f"{t_term:.2f} s ({len(ids) / max(t_term, 1e-9):.0f}/s)"),
        ("all cgroups and run dirs gone",
         "NOT within 600 s" if gone is None else f"{t_gone:.2f} s after the first terminate"),
        ("left after teardown (cgroup dirs, run dirs, tasks)", "%d, %d, %d" % left),
        ("memory cgroups in /proc/cgroups before / after (dying ones count)",
         f"{cg0} / {cg2}"),
        ("MemAvailable after teardown vs before",
         f"{(mi0['MemAvailable'] - mi2['MemAvailable']) / (1 << 20):+.1f} MiB"),
    ]
    width = max(len(r[0]) for r in rows if r[0])
    for a, b in rows:
        print("" if a is None else f"{a.ljust(width)}  {b}")
    print("note: /proc/meminfo deltas are host-wide (anything else running moves them); "
          "the cgroup rows are the sandboxes' own")
    print("limits: " + ", ".join(f"{a} {b}" for a, b in lim.items()))
    for at, e in errors[:5]:
        print(f"note: error after {at} sandboxes: {e}")
    for e in terr[:5]:
        print(f"note: terminate: {e}")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("what", choices=("latency", "throughput", "density", "all", "api"))
    ap.add_argument("--images", help="image cache to symlink as STATE/images "
                    "(default: $SBX_STATE_DIR/images, /var/lib/sbx/images, "
                    "/var/lib/sbx-test/images, whichever has python-3.11)")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 200)),
                    help="latency samples per row (default 200, or $BENCH_RUNS)")
    ap.add_argument("--warmup", type=int, default=int(os.environ.get("BENCH_WARMUP", 5)))
    ap.add_argument("--pause-ms", type=float, default=0,
                    help="pause before each create in the latency runs (lets a pool refill)")
    ap.add_argument("--pool-pause-ms", type=float, default=30,
                    help="pause before each create of the pooled latency runs (default 30: "
                    "the pool refills after 25 ms without claims)")
    ap.add_argument("--pool-args", help="extra sbxd arguments of the warm-pool variant, "
                    "e.g. '--pool-size 16': latency then runs cold and pooled; throughput "
                    "and density use them")
    ap.add_argument("--pool-settle", type=float, default=2,
                    help="seconds to wait after starting the pooled sbxd (default 2)")
    ap.add_argument("--clients", default="1,2,8,32", help="throughput levels (default 1,2,8,32)")
    ap.add_argument("--cycles", type=int, default=500, help="cycles per throughput level")
    ap.add_argument("--n", type=int, default=1000, help="density: sandboxes (default 1000)")
    ap.add_argument("--parallel", type=int, default=8, help="density: concurrent clients")
    ap.add_argument("--daemons", type=int, default=1,
                    help="density: spread the sandboxes over this many sbxd (default 1)")
    ap.add_argument("--lifetime", type=int, default=3600,
                    help="density: sandbox timeout in seconds (default 3600)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/api.py: needs root (sbxd makes namespaces and cgroups)")
    for b in ("sbxd", "sbx-init"):
        if not os.access(os.path.join(ROOT, "build", b), os.X_OK):
            sys.exit(f"bench/api.py: build/{b} is not built (make all)")
    # SIGTERM unwinds like ^C, so the finally clauses end what was started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    raise_nofile()
    images = find_images(args.images)
    if args.what in ("latency", "api", "all"):
        cmd_latency(args, images)
    if args.what in ("throughput", "api", "all"):
        cmd_throughput(args, images)
    if args.what in ("density", "all"):
        cmd_density(args, images)


if __name__ == "__main__":
    main()
