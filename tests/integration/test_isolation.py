"""Isolation, checked from inside real sandboxes with the static probe (issue 2)."""
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import pytest

from conftest import PROBE, SBX, sbx_env
from sandbox_util import parse, probe, sbx_run

pytestmark = pytest.mark.usefixtures("python_image")


def test_pid1_is_sbx_init_and_no_host_process_visible():
    r, kv = probe("procs")
    assert r.returncode == 0, r.stderr
    procs = {int(p.split(" ", 1)[0]): p.split(" ", 1)[1] if " " in p else "" for p in kv["proc"]}
    assert procs.get(1, "").startswith("sbx-init"), procs
    # Only PID 1, the shell that exec'd the probe (now the probe itself): nothing of the host.
    assert len(procs) <= 3, procs
    assert max(procs) < 100, procs


def uid_base():
    r, kv = probe("ids")
    assert r.returncode == 0, r.stderr
    inside, outside, count = kv["uid_map"][0].split()
    return kv, int(inside), int(outside), int(count)


def test_root_inside_is_unprivileged_on_host_and_unique():
    kv, inside, outside, count = uid_base()
    assert kv["uid"] == ["0"]
    assert inside == 0 and count == 65536
    assert outside >= 65536, "uid 0 inside must map to an unprivileged host uid"
    gin, gout, gcount = map(int, kv["gid_map"][0].split())
    assert gout == outside and gcount == 65536
    # Two sandboxes alive at the same time get different ranges.
    script = "cat > /tmp/.probe && chmod 755 /tmp/.probe && /tmp/.probe ids && sleep 2"
    procs = [subprocess.Popen([str(SBX), "run", "-q", "--", "/bin/sh", "-c", script],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=sbx_env())
             for _ in range(2)]
    outs = [p.communicate(PROBE.read_bytes(), timeout=120)[0].decode() for p in procs]
    bases = [int(parse(o)["uid_map"][0].split()[1]) for o in outs]
    assert bases[0] != bases[1], bases
    assert all(p.returncode == 0 for p in procs)


def host_pid1(runner):
    """The host pid of the sandbox's PID 1: the one child of an `sbx run` process."""
    children = []
    for task in os.listdir(f"/proc/{runner.pid}/task"):
        with open(f"/proc/{runner.pid}/task/{task}/children") as f:
            children += f.read().split()
    assert len(children) == 1, children
    return int(children[0])


def test_pid1_and_commands_run_in_the_sandbox_cgroups():
    # On v1 the cgroups are made and PID 1 attached while it mounts its filesystems
    # (spawn.c): it must still be inside them, under the limits, before anything runs,
    # and unshare its cgroup namespace only then, so that it sees its cgroup as "/".
    holder = subprocess.Popen(
        [str(SBX), "run", "-q", "--memory", "300", "--pids", "77", "--", "/bin/sh", "-c",
         "cat /proc/1/cgroup /proc/self/cgroup; echo ready; exec sleep 20"],
        stdout=subprocess.PIPE, env=sbx_env(), text=True)
    try:
        inside = []
        for line in holder.stdout:
            if line.strip() == "ready":
                break
            inside.append(line.strip())
        views = [l.split(":", 2) for l in inside]
        assert views and all(path == "/" for _, ctrl, path in views if ctrl), inside
        host = {}
        with open(f"/proc/{host_pid1(holder)}/cgroup") as f:
            for _, ctrls, path in (l.strip().split(":", 2) for l in f):
                host.update({c: path for c in ctrls.split(",")})
        if os.path.isdir("/sys/fs/cgroup/memory"):  # v1: one hierarchy per controller
            for ctrl in ("cpu", "cpuacct", "memory", "pids", "freezer"):
                assert re.fullmatch(r"/sbx/sb_[0-9a-f]+", host.get(ctrl, "")), (ctrl, host)
            for ctrl, limit_file, want in (("memory", "memory.limit_in_bytes", 300 << 20),
                                           ("pids", "pids.max", 77)):
                with open(f"/sys/fs/cgroup/{ctrl}{host[ctrl]}/{limit_file}") as f:
                    assert int(f.read()) == want, ctrl
        else:
            assert re.fullmatch(r"/sbx/sb_[0-9a-f]+", host[""]), host
            for limit_file, want in (("memory.max", 300 << 20), ("pids.max", 77)):
                with open(f"/sys/fs/cgroup{host['']}/{limit_file}") as f:
                    assert int(f.read()) == want, limit_file
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=30)


def test_no_capabilities_no_new_privs_seccomp():
    r, kv = probe("ids")
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(kv[cap][0], 16) == 0, (cap, kv[cap])
    assert kv["NoNewPrivs"] == ["1"]
    assert kv["Seccomp"] == ["2"]
    # Supplementary groups of sbxd/sbx (root's) must not leak in.
    assert kv["Groups"] in (["-"], [""]), kv["Groups"]
    assert kv["hostname"] == ["sandbox"]


REFUSED = ["mount", "umount", "unshare_user", "unshare_ns", "setns", "bpf", "keyctl",
           "add_key", "perf_event_open", "io_uring_setup", "open_by_handle_at",
           "name_to_handle_at", "kexec_load", "init_module", "finit_module", "ptrace",
           "reboot", "pivot_root", "chroot", "swapon", "userfaultfd", "open_tree", "fsopen",
           "clone_newuser", "socket_vsock", "socket_packet", "socket_alg", "socket_netlink"]


def test_seccomp_refuses_dangerous_syscalls():
    r, kv = probe("syscalls")
    assert r.returncode == 0, r.stderr
    for name in REFUSED:
        assert kv[name], f"{name} not probed: {r.stdout}"
        assert kv[name][0] != "ok", f"{name} was allowed"
        assert kv[name][0] in ("Operation not permitted", "Function not implemented",
                               "Address family not supported by protocol",
                               "Permission denied"), (name, kv[name])
    # Controls: ordinary calls still work, so the probe really reaches the kernel.
    assert kv["getpid"] == ["ok"]
    assert kv["socket_unix"] == ["ok"]
    assert kv["socket_inet"] == ["ok"]


def test_32bit_and_x32_entry_points_refused():
    r, kv = probe("int80")
    assert r.returncode == 0, r.stderr
    # Either the filter killed the child or the call returned an error, never a pid.
    for name in ("int80", "x32"):
        if f"{name}_ret" in kv:
            assert int(kv[f"{name}_ret"][0]) < 0, kv
        assert kv[name] and kv[name][0] != "exited 0", kv


def test_host_files_unreachable(state_dir):
    token = uuid.uuid4().hex
    markers = [f"/root/sbx-marker-{token}", f"/tmp/sbx-marker-{token}",
               f"{state_dir}/sbx-marker-{token}"]
    for m in markers:
        with open(m, "w") as f:
            f.write("host secret")
    try:
        paths = markers + ["/proc/1/root" + markers[0], "/proc/self/root" + markers[1]]
        r, kv = probe("access", *paths)
        assert r.returncode == 0, r.stderr
        assert len(kv["stat"]) == len(paths)
        for line in kv["stat"] + kv["read"]:
            assert not line.endswith(" ok"), line
        r = sbx_run(["/bin/sh", "-c", f"grep -rl {token} /root /tmp /etc 2>/dev/null; echo done"],
                    text=True)
        assert r.stdout.strip() == "done", r.stdout
    finally:
        for m in markers:
            os.unlink(m)


def test_proc_knobs_cannot_be_written():
    r, kv = probe("access", "/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern",
                  "/proc/sys/kernel/hostname", "/sys/kernel/uevent_helper", "/proc/kcore")
    assert r.returncode == 0, r.stderr
    for line in kv["write"]:
        assert not line.endswith(" ok"), line
    out = sbx_run(["/bin/sh", "-c", "head -c 16 /proc/kcore | wc -c"], text=True)
    assert out.stdout.strip() in ("0", ""), out


def test_dev_holds_only_expected_nodes():
    r, kv = probe("dev")
    assert r.returncode == 0, r.stderr
    names = set(kv["dev"])
    allowed = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
               "fd", "stdin", "stdout", "stderr", "console", "mqueue", "core"}
    assert {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"} <= names
    assert names <= allowed, names - allowed
    out = sbx_run(["/bin/sh", "-c", "ls -l /dev/null /dev/zero && echo hi > /dev/null && "
                   "head -c 4 /dev/urandom | wc -c"], text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("4"), out


def test_masked_dirs_and_dev_cannot_be_changed_even_by_root_inside():
    out = sbx_run(["/bin/sh", "-c",
                   "for d in /proc/acpi /proc/driver /sys/firmware /dev; do "
                   "  mkdir $d/x 2>/dev/null && echo \"mkdir $d\"; "
                   "  chmod 777 $d 2>/dev/null && echo \"chmod $d\"; "
                   "done; ls -A /proc/acpi /sys/firmware; touch /dev/shm/ok && echo shm"],
                  text=True)
    assert out.returncode == 0, out
    assert out.stdout.split() == ["/proc/acpi:", "/sys/firmware:", "shm"], out.stdout


def test_a_sandbox_makes_five_filesystems():
    """Every superblock registers a shrinker that the kernel accounts in every memory
    cgroup of the host, so a sandbox mounts as few as it can: its scratch tmpfs (upper
    layer, /tmp, /dev/shm, /dev and the masks are directories of it), the overlay, /proc,
    /sys and a devpts. Everything else is a bind (the host's device nodes)."""
    out = sbx_run(["/bin/sh", "-c", "cat /proc/self/mountinfo"], text=True)
    assert out.returncode == 0, out
    sbs = set()
    for line in out.stdout.splitlines():
        f = line.split()
        fstype = f[f.index("-") + 1]
        if fstype != "devtmpfs":  # the host's /dev nodes, bound in
            sbs.add((f[2], fstype))
    assert sorted(t for _, t in sbs) == ["devpts", "overlay", "proc", "sysfs", "tmpfs"], sbs


def test_no_fd_leaks_into_the_command():
    r, kv = probe("fds")
    assert r.returncode == 0, r.stderr
    fds = sorted(int(line.split()[0]) for line in kv["fd"])
    assert fds == [0, 1, 2], kv["fd"]


def test_environment_of_pid1_is_clean():
    r = sbx_run(["/bin/sh", "-c", "tr '\\0' '\\n' < /proc/1/environ; echo END"], text=True)
    # PID 1's environ is either unreadable (not dumpable) or holds only the minimal set.
    lines = [l for l in r.stdout.splitlines() if l != "END"]
    for line in lines:
        assert line.split("=", 1)[0] in ("PATH", "HOME", "TERM", "container"), line
    for key in os.environ:
        if key not in ("PATH", "HOME", "TERM"):
            assert f"{key}=" not in r.stdout


def test_two_sandboxes_cannot_see_each_other():
    token = uuid.uuid4().hex
    holder = subprocess.Popen(
        [str(SBX), "run", "-q", "--", "/bin/sh", "-c",
         f"echo {token} > /tmp/{token}; echo {token} > /root/{token}; "
         f"echo ready; exec sleep 20"],
        stdout=subprocess.PIPE, env=sbx_env())
    try:
        assert holder.stdout.readline().strip() == b"ready"
        r = sbx_run(["/bin/sh", "-c",
                     f"ls /tmp /root; cat /tmp/{token} /root/{token} 2>&1; "
                     f"for p in /proc/[0-9]*; do cat $p/cmdline | tr '\\0' ' '; echo; done"],
                    text=True)
        assert token not in r.stdout.replace(f"/tmp/{token}", "").replace(f"/root/{token}", "")
        assert "No such file" in r.stdout
        assert "sleep 20" not in r.stdout
    finally:
        # SIGTERM, not SIGKILL: sbx run passes it to the command and cleans up after
        # itself (a SIGKILLed one leaves its cgroup for the next sbx run to remove).
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=30)


def test_network_is_isolated_loopback_only():
    r = sbx_run(["/bin/sh", "-c", "cat /proc/net/dev | tail -n +3 | cut -d: -f1"], text=True)
    ifaces = {l.strip() for l in r.stdout.splitlines() if l.strip()}
    assert ifaces == {"lo"}, ifaces
    r = sbx_run(["python3", "-c",
                 "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); s.listen();"
                 "c=socket.create_connection(s.getsockname()); print('lo ok')"], text=True)
    assert r.stdout.strip() == "lo ok", r.stderr
