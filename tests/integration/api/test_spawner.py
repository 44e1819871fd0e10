"""sbxd clones its sandboxes from small spawner processes, the sbx-spawner program
(src/runtime/spawner.c): the sandboxes are their children, the spawners hold nothing of
sbxd's, and when they die (or the program is missing) sbxd keeps creating sandboxes by
itself."""
import os
import signal
import time

from .conftest import Sbxd, finish, make_state_dir


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(p))
    return out


def spawners(d):
    """sbxd's children that run sbx-spawner, next to sbxd (sandboxes run sbx-init)."""
    exe = os.path.join(os.path.dirname(os.readlink(f"/proc/{d.proc.pid}/exe")), "sbx-spawner")
    return [p for p in children(d.proc.pid) if os.readlink(f"/proc/{p}/exe") == exe]


def mappings(pid):
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for _ in f)


def init_pid(d, sid):
    return int(os.readlink(d.state_dir / "run" / sid / "pid"))  # a symlink to the pid


def ppid(pid):
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])


def test_sandboxes_come_from_spawners_that_hold_no_sbxd_fds(python_image):
    d = Sbxd(make_state_dir(), ["--pool-size", "0"]).start()
    try:
        sp = spawners(d)
        assert len(sp) >= 2, sp
        for p in sp:
            # stdio and the socket to sbxd: not its database, HTTP socket or state dir lock
            fds = sorted(int(f) for f in os.listdir(f"/proc/{p}/fd"))
            assert fds == [0, 1, 2, 3], (p, fds, [os.readlink(f"/proc/{p}/fd/{f}") for f in fds])
            # the point of a program of its own: a clone copies far fewer mappings
            assert mappings(p) * 3 < mappings(d.proc.pid), (mappings(p), mappings(d.proc.pid))
        sid = d.create()
        assert ppid(init_pid(d, sid)) in sp
        r = d.exec(sid, ["/bin/sh", "-c", "echo $$; cat /proc/1/comm"])
        assert r.status_code == 200, r.text
        assert r.json()["stdout"] == "2\nsbx-init\n", r.text
        # terminate waits for the sandbox although it is not sbxd's own child
        pid1 = init_pid(d, sid)
        assert d.post("/sandbox/terminate", {"sandbox_id": sid}).status_code == 200
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid1}") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not os.path.exists(f"/proc/{pid1}")
    finally:
        finish(d)


def test_sbxd_spawns_by_itself_when_the_spawners_die(python_image):
    d = Sbxd(make_state_dir(), ["--pool-size", "0"]).start()
    try:
        before = d.create()
        for p in spawners(d):
            os.kill(p, signal.SIGKILL)
        # a sandbox made by a spawner outlives it
        r = d.exec(before, ["/bin/true"])
        assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
        sid = d.create()
        assert ppid(init_pid(d, sid)) == d.proc.pid
        r = d.exec(sid, ["/bin/echo", "ok"])
        assert r.status_code == 200 and r.json()["stdout"] == "ok\n", r.text
        assert "spawning in sbxd from now on" in d.log()
    finally:
        finish(d)


def test_spawners_end_with_sbxd(python_image):
    d = Sbxd(make_state_dir(), ["--pool-size", "0"]).start()
    sp = spawners(d)
    assert sp
    sid = d.create()
    d.kill9()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") for p in sp) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(os.path.exists(f"/proc/{p}") for p in sp)
    # the sandbox itself lives on, as always after a crash, and the next sbxd adopts it
    d.start()
    r = d.exec(sid, ["/bin/true"])
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    finish(d)


def test_sbxd_spawns_by_itself_without_the_spawner_program(python_image, tmp_path):
    """A copy of sbxd without sbx-spawner beside it: a warning, and every
    sandbox is cloned by sbxd itself."""
    import shutil
    import pytest
    if os.path.exists("/usr/local/lib/sbx/sbx-spawner"):
        pytest.skip("an installed sbx-spawner would be found (sbx_find_sibling's fallback)")
    d = Sbxd(make_state_dir(), ["--pool-size", "0"])  # --init names the real sbx-init
    shutil.copy2(d.binary, tmp_path / "sbxd")
    d.binary = str(tmp_path / "sbxd")
    d.start()
    try:
        assert spawners(d) == []
        assert "sbx-spawner not found next to sbxd" in d.log()
        sid = d.create()
        assert ppid(init_pid(d, sid)) == d.proc.pid
        r = d.exec(sid, ["/bin/echo", "ok"])
        assert r.status_code == 200 and r.json()["stdout"] == "ok\n", r.text
    finally:
        finish(d)
