"""sbxd restarts: kill -9 or SIGTERM, then a new sbxd re-adopts running sandboxes (files
intact, lifetime unchanged) and cleans up those whose lifetime ended meanwhile."""
import time

from .conftest import Sbxd, leftovers, wait_clean
from .test_api_errors import err
from .test_api_lifetimes import count_procs, wait_status


def restart(d, kill9=True):
    if kill9:
        d.kill9()
    else:
        assert d.stop() == 0
    return d.start()


def test_restart_after_kill9_readopts_running_sandboxes(own_sbxd):
    d = own_sbxd()
    keep = d.create(timeout=300)
    short = d.create(timeout=2)
    assert d.exec(keep, "echo kept > /root/state.txt").json()["exit_code"] == 0
    # A process started in the sandbox before the restart keeps running through it.
    assert d.exec(keep, "nohup sleep 1000 >/dev/null 2>&1 &").json()["exit_code"] == 0
    before = d.post("/sandbox/status", {"sandbox_id": keep}).json()
    short_exp = d.post("/sandbox/status", {"sandbox_id": short}).json()["expires_at"]
    d.kill9()
    # Let the short sandbox's lifetime end while no sbxd runs.
    time.sleep(3)
    d.start()
    after = d.post("/sandbox/status", {"sandbox_id": keep}).json()
    assert after["status"] == "running"
    assert after["expires_at"] == before["expires_at"]
    assert after["created_at"] == before["created_at"]
    assert after["commands_executed"] == before["commands_executed"]
    r = d.exec(keep, "cat /root/state.txt").json()
    assert r["stdout"] == "kept\n"
    assert count_procs(d, keep, "sleep", "1000") == 1
    st = d.post("/sandbox/status", {"sandbox_id": short}).json()
    assert st["status"] == "terminated" and st["reason"] == "timeout"
    assert st["expires_at"] == short_exp
    err(d.exec(short, "true"), 408, "sandbox_timeout")
    assert wait_clean(d.state_dir, [short]) == []
    # The re-adopted sandbox is still supervised: terminate works and cleans up.
    assert d.post("/sandbox/terminate", {"sandbox_id": keep}).status_code == 200
    assert wait_clean(d.state_dir, [keep]) == []


def test_readopted_sandbox_still_expires(own_sbxd):
    d = own_sbxd()
    sid = d.create(timeout=4)
    d.kill9()
    d.start()
    assert d.post("/sandbox/status", {"sandbox_id": sid}).json()["status"] == "running"
    st = wait_status(d, sid)
    assert st["reason"] == "timeout"
    assert wait_clean(d.state_dir, [sid]) == []


def test_graceful_stop_leaves_sandboxes_running(own_sbxd):
    d = own_sbxd()
    sid = d.create()
    d.exec(sid, "echo 1 > /tmp/n")
    assert d.stop() == 0
    # Still there on the host while no sbxd runs.
    assert leftovers(d.state_dir, [sid]) != []
    d.start()
    assert d.exec(sid, "cat /tmp/n").json()["stdout"] == "1\n"
    d.post("/sandbox/terminate", {"sandbox_id": sid})


def test_sandbox_that_died_while_sbxd_was_down(own_sbxd):
    import os
    import signal
    from .test_api_lifetimes import sandbox_init_pid
    d = own_sbxd()
    sid = d.create()
    d.kill9()
    os.kill(sandbox_init_pid(sid), signal.SIGKILL)
    d.start()
    st = d.post("/sandbox/status", {"sandbox_id": sid}).json()
    assert st["status"] == "terminated"
    assert st["reason"] == "lost during sbxd restart"
    err(d.exec(sid, "true"), 410, "sandbox_terminated")
    assert wait_clean(d.state_dir, [sid]) == []


def test_sandbox_whose_agent_socket_is_gone_is_not_adopted(own_sbxd):
    """Nothing reaches sbx-init without its socket: adopted anyway, every exec failed with
    500 until the lifetime ended. It is ended at restart instead, and cleaned up."""
    d = own_sbxd()
    sid = d.create(timeout=300)
    d.kill9()
    (d.state_dir / "run" / sid / "agent.sock").unlink()
    d.start()
    st = d.post("/sandbox/status", {"sandbox_id": sid}).json()
    assert st["status"] == "terminated" and st["reason"] == "lost during sbxd restart", st
    err(d.exec(sid, "true"), 410, "sandbox_terminated")
    assert wait_clean(d.state_dir, [sid]) == []


def test_second_sbxd_on_same_state_dir_is_refused(own_sbxd):
    d = own_sbxd()
    other = Sbxd(d.state_dir)
    try:
        other.start()
        raise AssertionError("a second sbxd started on the same state dir")
    except RuntimeError as e:
        assert "another sbxd" in str(e)


def test_sigterm_cuts_running_exec_and_keeps_the_sandbox(own_sbxd):
    import concurrent.futures
    d = own_sbxd()
    sid = d.create()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(d.exec, sid, "sleep 1000")
        deadline = time.monotonic() + 30
        while count_procs(d, sid, "sleep", "1000") != 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert d.stop() == 0
        # The caller gets an answer before sbxd closes its connections.
        err(fut.result(timeout=60), 503, "unavailable")
    d.start()
    assert d.exec(sid, "echo ok").json()["stdout"] == "ok\n"
    d.post("/sandbox/terminate", {"sandbox_id": sid})


def test_run_dir_of_an_older_version_is_adopted_and_removed(own_sbxd):
    """Before, the pid was a file's content and the scratch mount point a root/ subdir;
    now pid is a symlink to the pid. A sandbox left by an older sbxd must still be
    adopted, served and cleaned up."""
    import os
    d = own_sbxd()
    sid = d.create()
    run = d.state_dir / "run" / sid
    pid = int(os.readlink(run / "pid"))
    d.kill9()
    (run / "pid").unlink()
    (run / "pid").write_text(f"{pid}\n")
    (run / "root").mkdir(mode=0o700)
    d.start()
    assert d.exec(sid, "echo ok").json()["stdout"] == "ok\n"
    assert d.post("/sandbox/terminate", {"sandbox_id": sid}).status_code == 200
    assert wait_clean(d.state_dir, [sid]) == []
    assert not run.exists()


def test_cgroup_that_cannot_be_removed_keeps_its_run_dir_until_a_sweep(own_sbxd):
    """A cgroup that cannot be removed at terminate (here: a child cgroup made in it from
    outside) must not be orphaned: its run dir stays, and the next sbxd start removes
    both once the obstacle is gone."""
    import glob
    import os
    from .conftest import leftovers
    d = own_sbxd("--pool-size", "0")
    sid = d.create()
    cgs = glob.glob(f"/sys/fs/cgroup/pids/sbx/{sid}") or glob.glob(f"/sys/fs/cgroup/sbx/{sid}")
    assert cgs, "no cgroup found for the sandbox"
    blocker = os.path.join(cgs[0], "blocker")
    os.mkdir(blocker)
    try:
        assert d.post("/sandbox/terminate", {"sandbox_id": sid}).status_code == 200
        # teardown retries the removal for 5 s, then gives up and keeps the run dir
        deadline = time.monotonic() + 30
        while "remove cgroup" not in d.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "its run dir stays" in d.log()
        assert (d.state_dir / "run" / sid).is_dir()
        assert os.path.isdir(cgs[0])
    finally:
        os.rmdir(blocker)
    d.kill9()
    d.start()
    assert wait_clean(d.state_dir, [sid]) == [], leftovers(d.state_dir, [sid])
