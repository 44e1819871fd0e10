"""Resource limits hold, measured from inside real sandboxes (issue 2)."""
import pytest

from sandbox_util import probe, sbx_run

pytestmark = pytest.mark.usefixtures("python_image")


def test_memory_hog_is_killed_near_the_limit():
    r, kv = probe("memhog", "2048", opts=["--memory", "128"])
    assert r.returncode == 137, (r.returncode, r.stderr)  # SIGKILL by the OOM killer
    reached = int(kv["allocated"][-1]) if kv["allocated"] else 0
    assert 48 <= reached <= 128, reached


def test_fork_bomb_stops_at_pids_limit():
    r, kv = probe("forkbomb", "100000", opts=["--pids", "64"])
    forked = int(kv["forked"][0])
    assert kv["stopped"] == ["Resource temporarily unavailable"], kv
    # PID 1, sh and the probe count against the limit too.
    assert 32 <= forked < 64, forked


def test_disk_fill_ends_in_enospc_near_the_limit():
    r, kv = probe("fill", "/root/big", opts=["--disk", "64"])
    assert r.returncode == 0, r.stderr
    written = int(kv["written"][0])
    assert kv["error"] == ["No space left on device"], kv
    assert 48 << 20 <= written <= 64 << 20, written


@pytest.mark.parametrize("where", ["/tmp/big", "/dev/shm/big"])
def test_tmp_and_shm_share_the_disk_bound(where):
    r, kv = probe("fill", where, opts=["--disk", "32"])
    assert kv["error"] == ["No space left on device"], kv
    assert int(kv["written"][0]) <= 32 << 20


def test_inode_bound():
    r, kv = probe("inodes", "/root", opts=["--inodes", "2000"])
    assert kv["error"] == ["No space left on device"], kv
    assert 1000 <= int(kv["files"][0]) <= 2000, kv


def test_four_spinning_threads_get_about_one_cpu():
    r, kv = probe("spin", "4", "3", opts=["--cpu", "1"])
    assert r.returncode == 0, r.stderr
    cpus = float(kv["cpus"][0])
    assert 0.5 <= cpus <= 1.3, cpus


def test_half_a_cpu():
    r, kv = probe("spin", "2", "3", opts=["--cpu", "0.5"])
    cpus = float(kv["cpus"][0])
    assert 0.25 <= cpus <= 0.7, cpus


def test_output_flood_is_bounded_and_marked_truncated():
    r = sbx_run(["/bin/sh", "-c", "head -c 50000000 /dev/zero; echo done >&2"],
                opts=["--max-output", "1M"])
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == 1 << 20
    assert b"truncated" in r.stderr
    assert b"stdout 50000000 bytes" in r.stderr


def test_lifetime_timeout_kills_command():
    r = sbx_run(["sleep", "60"], opts=["--timeout", "2"], timeout=60)
    assert r.returncode == 124, (r.returncode, r.stderr)
    assert b"timed out" in r.stderr


def sched_inside(prefix):
    """(policy, nice) of a command in a sandbox started by `PREFIX sbx run`."""
    r = sbx_run(["cat", "/proc/self/stat"], prefix=prefix, text=True)
    assert r.returncode == 0, r.stderr
    fields = r.stdout.rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 is fields[0]
    return int(fields[38]), int(fields[16])  # policy (field 41), nice (field 19)


@pytest.mark.parametrize("prefix", [["chrt", "-f", "10"], ["chrt", "-r", "5"],
                                    ["nice", "-n", "-5"]])
def test_privileged_scheduling_is_not_inherited(prefix):
    # A real-time policy would let sandboxed code starve the host (and on cgroup v1 the
    # sandbox could not even join its cpu cgroup); a negative nice value would rank it
    # above the host's work.
    assert sched_inside(prefix) == (0, 0)  # SCHED_OTHER, nice 0


def test_positive_nice_is_inherited():
    # The operator's choice of a lower priority for the sandboxes stays.
    assert sched_inside(["nice", "-n", "7"]) == (0, 7)


def test_personality_is_reset():
    # `setarch -R` turns address randomization off for sbx and what it starts; the
    # sandbox must get the default personality back.
    r = sbx_run(["cat", "/proc/self/personality"], prefix=["setarch", "-R"], text=True)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout, 16) == 0, r.stdout


def test_umask_of_the_caller_is_not_inherited():
    # Under umask 077 the sandbox's / and /dev came out 0700: unusable to any user but
    # root inside.
    r = sbx_run(["sh", "-c", "stat -c %a / /dev /tmp; grep Umask /proc/self/status"],
                prefix=["sh", "-c", 'umask 077; exec "$@"', "sh"], text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["755", "755", "1777", "Umask:", "0022"], r.stdout


def test_realtime_and_nice_rlimits_are_zero():
    # Limits given to sbx (e.g. systemd's LimitRTPRIO= for sbxd) must not let sandboxed
    # code raise its own scheduling priority.
    r = sbx_run(["cat", "/proc/self/limits"], prefix=["prlimit", "--rtprio=50", "--nice=30"],
                text=True)
    if "Operation not permitted" in r.stderr and "prlimit:" in r.stderr:
        pytest.skip("raising RLIMIT_RTPRIO/RLIMIT_NICE needs CAP_SYS_RESOURCE, which this "
                    "host's root lacks")
    assert r.returncode == 0, r.stderr
    lines = {l[:26].strip(): l[26:].split()[:2] for l in r.stdout.splitlines()}
    assert lines["Max realtime priority"] == ["0", "0"], r.stdout
    assert lines["Max nice priority"] == ["0", "0"], r.stdout


@pytest.mark.parametrize("cls, want", [("1", "none: prio 0"), ("3", "idle")])
def test_realtime_io_class_is_not_inherited(cls, want):
    # ionice -c1 (real-time I/O) for sbx must not let the sandbox starve the host's disk;
    # -c3 (idle), an operator's choice of lower priority, stays.
    r = sbx_run(["ionice"], prefix=["ionice", "-c", cls], text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == want, r.stdout
