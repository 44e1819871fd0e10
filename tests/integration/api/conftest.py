"""Fixtures for the HTTP API tests: a real build/sbxd on a free loopback port.

Each sbxd gets its own state directory (its own sbx.db and run dirs) whose images/ is a
symlink to the shared test state dir's images/, so the default image is built once for
all integration tests and never per run."""
import glob
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import requests

from conftest import SBX, SBXD, SBX_INIT, STATE_DIR  # the parent (tests/integration) conftest

PREFIXES = ["/v1", "/api/v1/modal", "/v1/marketplace/compute"]
# Another sbxd binary (e.g. one built with sanitizers) can be tested with SBX_TEST_SBXD.
SBXD_BIN = os.environ.get("SBX_TEST_SBXD", str(SBXD))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sbxd:
    """A running sbxd and helpers to call it."""

    def __init__(self, state_dir, extra_args=()):
        self.state_dir = pathlib.Path(state_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = self.state_dir / "sbxd.log"
        self.created = []  # every sandbox id this sbxd handed out
        self.binary = SBXD_BIN

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--listen", f"127.0.0.1:{self.port}", "--state-dir", str(self.state_dir),
             "--init", str(SBX_INIT), "--log-level", "debug", *self.extra_args],
            stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sbxd exited with {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError("sbxd did not come up: " + self.log())

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def post(self, path, body=None, prefix="/v1", **kw):
        kw.setdefault("timeout", 120)
        return requests.post(self.url + prefix + path, json=body if body is not None else {}, **kw)

    def get(self, path, prefix="/v1", **kw):
        kw.setdefault("timeout", 60)
        return requests.get(self.url + prefix + path, **kw)

    def create(self, **body):
        r = self.post("/sandbox/create", body)
        assert r.status_code == 200, r.text
        sid = r.json()["sandbox_id"]
        self.created.append(sid)
        return sid

    def exec(self, sid, command, **body):
        return self.post("/sandbox/exec", {"sandbox_id": sid, "command": command, **body})

    def terminate_all(self):
        r = self.get("/sandbox/list?status=running")
        for s in r.json()["sandboxes"]:
            self.post("/sandbox/terminate", {"sandbox_id": s["sandbox_id"]})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.get("/health").json()["sandboxes_running"] == 0:
                return
            time.sleep(0.05)
        raise AssertionError("sandboxes still registered after terminate: " + self.log())


def leftovers(state_dir, ids):
    """Host traces of the given sandboxes: cgroups, run dirs, mounts, sbx-init processes."""
    found = []
    for sid in ids:
        found += glob.glob(f"/sys/fs/cgroup/*/sbx/{sid}") + glob.glob(f"/sys/fs/cgroup/sbx/{sid}")
        found += glob.glob(f"{state_dir}/run/{sid}")
    with open("/proc/self/mountinfo") as f:
        found += [l.strip() for l in f if f"{state_dir}/run/" in l]
    pids = subprocess.run(["pgrep", "-x", "sbx-init"], capture_output=True, text=True).stdout
    for pid in pids.split():
        try:
            cg = pathlib.Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        found += [f"sbx-init pid {pid} of {sid}" for sid in ids if sid in cg]
    return found


def wait_clean(state_dir, ids, seconds=15):
    deadline = time.monotonic() + seconds
    while True:
        left = leftovers(state_dir, ids)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def make_state_dir():
    d = pathlib.Path(tempfile.mkdtemp(prefix="sbxd-test-"))
    (STATE_DIR / "images").mkdir(parents=True, exist_ok=True)
    (d / "images").symlink_to(STATE_DIR / "images")
    return d


def finish(daemon):
    """Terminate what is left, stop sbxd, and check that nothing stayed behind."""
    try:
        if daemon.proc.poll() is None:
            daemon.terminate_all()
    finally:
        rc = daemon.stop()
    left = wait_clean(daemon.state_dir, daemon.created)
    db = daemon.state_dir / "sbx.db"
    running = subprocess.run(["sqlite3", str(db), "SELECT id FROM sandboxes WHERE status='running'"],
                             capture_output=True, text=True).stdout.split()
    shutil.rmtree(daemon.state_dir, ignore_errors=True)
    assert rc == 0, f"sbxd exit status {rc}"
    assert left == [], f"left behind: {left}"
    assert running == [], f"rows still marked running: {running}"


def one_sbxd():
    """The body of a fixture of one sbxd with a state dir of its own (`yield from`); finished
    (leftovers checked) when the fixture ends."""
    d = Sbxd(make_state_dir()).start()
    yield d
    finish(d)


def sbxd_factory(end=finish):
    """The body of a fixture (`yield from`) that yields start(*args): each call starts a
    private sbxd with these arguments; each is ended by end when the fixture ends."""
    daemons = []

    def start(*args):
        d = Sbxd(make_state_dir(), args).start()
        daemons.append(d)
        return d

    yield start
    for d in daemons:
        end(d)


@pytest.fixture(scope="session")
def sbxd(python_image):
    """One sbxd for the whole API suite."""
    yield from one_sbxd()


@pytest.fixture
def own_sbxd(python_image):
    """A private sbxd for tests that restart or kill it, or change its limits."""
    yield from sbxd_factory()
