"""Teardown leaves nothing behind: processes, cgroups, mounts, run dirs (issue 2)."""
import glob
import os
import random
import signal
import subprocess
import time
import uuid

import pytest

from conftest import SBX, sbx_env
from sandbox_util import sbx_run

pytestmark = pytest.mark.usefixtures("python_image")


def leftovers(state_dir):
    found = []
    found += glob.glob("/sys/fs/cgroup/*/sbx/sb_*") + glob.glob("/sys/fs/cgroup/sbx/sb_*")
    found += glob.glob(f"{state_dir}/run/*")
    with open("/proc/self/mountinfo") as f:
        found += [l for l in f if f"{state_dir}/run" in l]
    out = subprocess.run(["pgrep", "-x", "sbx-init"], capture_output=True, text=True).stdout
    found += [f"sbx-init pid {p}" for p in out.split()]
    return found


@pytest.fixture
def baseline(state_dir):
    """What exists before the test (e.g. sandboxes of another test's sbxd): not ours."""
    return set(leftovers(state_dir))


def wait_clean(state_dir, baseline, seconds=10):
    """Wait until nothing beyond the baseline is left; returns what is left."""
    deadline = time.monotonic() + seconds
    while True:
        left = [x for x in leftovers(state_dir) if x not in baseline]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def test_many_cycles_leave_nothing(state_dir, baseline):
    for i in range(25):
        r = sbx_run(["/bin/sh", "-c", f"echo {i} > /tmp/x; cat /tmp/x"])
        assert r.returncode == 0 and r.stdout.strip() == str(i).encode()
    assert wait_clean(state_dir, baseline) == []


def test_double_forked_setsid_processes_are_killed(state_dir, baseline):
    token = uuid.uuid4().hex[:12]
    n1, n2, n3 = (random.randint(100000, 999999) for _ in range(3))
    patterns = [f"sleep {n1}", f"sleep {n2}", f"sbx{token}"]
    # Three survivors: a double fork under setsid, its setsid'ed parent, and a renamed
    # nohup'ed one. Each marks itself started, so the host check has something to miss.
    script = (
        "printf 'touch /tmp/r.$1; exec sleep $1\\n' > /tmp/d.sh; "
        f"setsid sh -c 'sh /tmp/d.sh {n1} & exec sh /tmp/d.sh {n2}' </dev/null >/dev/null 2>&1 & "
        f"(setsid nohup bash -c 'touch /tmp/r.3; exec -a sbx{token} sleep {n3}' "
        "</dev/null >/dev/null 2>&1 &); "
        f"for i in $(seq 200); do [ -e /tmp/r.{n1} ] && [ -e /tmp/r.{n2} ] && [ -e /tmp/r.3 ] "
        "&& break; sleep 0.05; done; echo started $(ls /tmp/r.* | wc -l)")
    r = sbx_run(["/bin/sh", "-c", script])
    assert r.stdout.strip() == b"started 3", (r.stdout, r.stderr)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-f", "|".join(patterns)], capture_output=True,
                             text=True).stdout
        if not out.strip():
            break
        time.sleep(0.05)
    assert out.strip() == "", "processes outlived the sandbox: " + out
    assert wait_clean(state_dir, baseline) == []


def test_sbx_init_killed_with_sigkill_is_cleaned_up(state_dir, baseline):
    p = subprocess.Popen([str(SBX), "run", "-q", "--", "/bin/sh", "-c", "echo up; exec sleep 60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sbx_env())
    assert p.stdout.readline().strip() == b"up"
    inits = subprocess.run(["pgrep", "-x", "-P", str(p.pid), "sbx-init"], capture_output=True,
                           text=True).stdout.split()
    assert len(inits) == 1, inits
    os.kill(int(inits[0]), signal.SIGKILL)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 125, (p.returncode, err)
    assert b"sandbox" in err
    assert wait_clean(state_dir, baseline) == []


def test_interrupting_sbx_run_cleans_up(state_dir, baseline):
    p = subprocess.Popen([str(SBX), "run", "-q", "--", "/bin/sh", "-c", "echo up; exec sleep 60"],
                         stdout=subprocess.PIPE, env=sbx_env())
    assert p.stdout.readline().strip() == b"up"
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)
    assert p.returncode == 128 + signal.SIGINT
    assert wait_clean(state_dir, baseline) == []


def test_the_next_sbx_run_removes_what_a_killed_one_left(state_dir, baseline):
    """SIGKILL gives `sbx run` no chance to tear down: its sandbox dies with it
    (PDEATHSIG) but the cgroup and run dir stay until the next `sbx run` finds them."""
    p = subprocess.Popen([str(SBX), "run", "-q", "--", "/bin/sh", "-c", "echo up; exec sleep 60"],
                         stdout=subprocess.PIPE, env=sbx_env())
    assert p.stdout.readline().strip() == b"up"
    p.kill()
    p.wait()
    left = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [x for x in leftovers(state_dir) if x not in baseline]
        if left and not [x for x in left if x.startswith("sbx-init")]:
            break
        time.sleep(0.05)
    run_dirs = [x for x in left if x.startswith(f"{state_dir}/run/")]
    assert len(run_dirs) == 1, left
    sid = os.path.basename(run_dirs[0])
    assert glob.glob(f"/sys/fs/cgroup/*/sbx/{sid}") + glob.glob(f"/sys/fs/cgroup/sbx/{sid}")
    # Young run dirs may belong to a spawn in progress: a run right now keeps it.
    assert sbx_run(["/bin/true"]).returncode == 0
    assert os.path.isdir(run_dirs[0])
    old = time.time() - 120
    os.utime(run_dirs[0], (old, old))
    assert sbx_run(["/bin/true"]).returncode == 0
    assert wait_clean(state_dir, baseline) == []
