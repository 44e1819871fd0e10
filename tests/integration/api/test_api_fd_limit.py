"""sbxd and its open-files limit (docs/runtime.md, "fds and density"): it raises the soft
RLIMIT_NOFILE to the hard limit at start, and warns when --max-sandboxes cannot fit."""
import os
import shutil
import signal
import subprocess
import time

import requests

from .conftest import SBX_INIT, SBXD_BIN, free_port, make_state_dir


def run_sbxd(nofile, max_sandboxes):
    """Start sbxd under `prlimit --nofile=SOFT:HARD`; return (soft limit it runs with, log)."""
    state, port = make_state_dir(), free_port()
    log_path = state / "sbxd.log"
    with open(log_path, "wb") as log:
        p = subprocess.Popen(["prlimit", f"--nofile={nofile}", SBXD_BIN, "--listen",
                              f"127.0.0.1:{port}", "--state-dir", str(state), "--init",
                              str(SBX_INIT), "--no-prepare-image", "--pool-size", "0",
                              "--max-sandboxes", str(max_sandboxes)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert p.poll() is None, log_path.read_text()
            try:
                if requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        with open(f"/proc/{p.pid}/limits") as f:
            soft = next(int(line.split()[3]) for line in f if line.startswith("Max open files"))
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
    text = log_path.read_text()
    shutil.rmtree(state, ignore_errors=True)
    return soft, text


def test_soft_limit_raised_and_too_many_sandboxes_warned():
    soft, log = run_sbxd("256:4096", 5000)
    assert soft == 4096
    assert "--max-sandboxes 5000 needs about" in log and "RLIMIT_NOFILE is 4096" in log, log


def test_no_warning_when_it_fits():
    soft, log = run_sbxd("256:4096", 500)
    assert soft == 4096
    assert "RLIMIT_NOFILE" not in log, log


def fd_targets(pid):
    import os
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def test_no_timer_or_uid_lock_fd_per_sandbox(own_sbxd):
    # No pool: a refill in flight holds the lock of the slot it is claiming, legitimately.
    sbxd = own_sbxd("--pool-size", "0")
    ids = [sbxd.create() for _ in range(8)]
    fds = fd_targets(sbxd.proc.pid)
    # One timer for all lifetimes; the uid slot locks are held by each sbx-init only.
    assert fds.count("anon_inode:[timerfd]") == 1, fds
    assert not [t for t in fds if "/uids/" in t], fds
    assert fds.count("anon_inode:[pidfd]") >= len(ids)
    for sid in ids:
        lock = f"/run/sbx/uids/{uid_slot(sbxd, sid)}.lock"
        assert os.getxattr(lock, "user.sbx.sandbox").decode() == sid
        assert sbxd.post("/sandbox/terminate", {"sandbox_id": sid}).status_code == 200


def uid_slot(d, sid):
    """The uid slot of sandbox sid, from its PID 1's uid_map (base 0x10000000, 65536 each)."""
    pid = int(os.readlink(f"{d.state_dir}/run/{sid}/pid"))  # a symlink to the pid
    base = int(open(f"/proc/{pid}/uid_map").read().split()[1])
    return (base - 0x10000000) // 65536


def test_warns_when_sandboxes_could_use_up_process_ids():
    """kernel.pid_max is one host-wide budget: max_sandboxes sandboxes of up to 512 tasks
    each that do not fit in it (with room for the host) get a warning at start."""
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    over = pid_max // 512 + 1  # more sandboxes of 512 tasks than pid_max holds
    _, text = run_sbxd("4096:4096", over)
    assert "kernel.pid_max" in text, text
    _, text = run_sbxd("4096:4096", max(1, (pid_max - 4096) // 512 - 1))
    assert "kernel.pid_max" not in text, text
