"""Escape attempts from inside real sandboxes: code running as the sandbox's root that
goes after PID 1 (sbx-init), the host and the other sandboxes."""
import fcntl
import os
import signal
import struct
import subprocess

import pytest

from conftest import SBX, sbx_env
from sandbox_util import probe, sbx_run
from test_isolation import host_pid1

pytestmark = pytest.mark.usefixtures("python_image")


def test_pid1_is_not_reachable_through_proc():
    # execve makes a readable program dumpable again, whatever the runtime set before it:
    # sbx-init must clear the flag itself. A dumpable PID 1 that runs as the sandbox's
    # root can have its memory rewritten through /proc/1/mem (no ptrace needed), which
    # gives a command PID 1's fds (fd 4 is a host file opened read-write), and shows
    # host paths in /proc/1/exe, maps and fd links.
    r, kv = probe("pid1")
    assert r.returncode == 0, r.stderr
    for key in ("pid1_mem_rw", "pid1_mem_ro", "pid1_fd4", "pid1_maps", "pid1_environ",
                "pid1_exe", "pid1_fd4_link"):
        assert kv[key] == ["Permission denied"], (key, r.stdout)


def test_pid1_holds_the_host_lock_file_read_only():
    # sbx-init's fd 4 is the uid slot's lock file in /run/sbx/uids, on the host. Should a
    # command ever run code as PID 1, a writable fd 4 would let it fill the host's disk
    # outside every bound of the sandbox; flock and the owner xattr need no write access.
    holder = subprocess.Popen(
        [str(SBX), "run", "-q", "--", "/bin/sh", "-c", "echo ready; exec sleep 20"],
        stdout=subprocess.PIPE, env=sbx_env(), text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        pid1 = host_pid1(holder)
        assert os.readlink(f"/proc/{pid1}/fd/4").startswith("/run/sbx/uids/")
        with open(f"/proc/{pid1}/fdinfo/4") as f:
            flags = int(next(l for l in f if l.startswith("flags:")).split()[1], 8)
        assert flags & os.O_ACCMODE == os.O_RDONLY, oct(flags)
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=30)


def test_native_aio_contexts_are_refused():
    # io_setup draws on fs.aio-max-nr, one pool for the whole host that no cgroup bounds:
    # a sandbox that took it all (one call of 60,000 events did) left the host and every
    # other sandbox with EAGAIN. It answers ENOSYS, as a kernel without AIO would.
    r, kv = probe("syscalls")
    assert r.returncode == 0, r.stderr
    assert kv["io_setup"] == ["Function not implemented"], r.stdout
    assert kv["getpid"] == ["ok"]


def test_line_disciplines_cannot_be_changed():
    # TIOCSETD on the sandbox's own pty: another line discipline is a driver that most
    # hosts build as a module and load on demand for anyone (n_hdlc, n_gsm: exploited
    # use-after-frees). N_NULL is built in here, so an allowed ioctl would succeed.
    r, kv = probe("ldisc")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert kv["ldisc_null"] == ["Operation not permitted"], r.stdout


def test_signals_to_pid1_from_inside_are_ignored():
    # PID 1 of a pid namespace gets from inside only the signals it has a handler for;
    # sbx-init has none (SIGCHLD comes through a signalfd), so a stop or a kill sent by a
    # command must leave it running, and the sandbox usable.
    r = sbx_run(["/bin/sh", "-c",
                 "for s in STOP TSTP TERM HUP INT QUIT SEGV ABRT USR1 PIPE ALRM CHLD KILL; do"
                 " kill -$s 1 || echo failed $s; done; grep '^State:' /proc/1/status;"
                 " kill -CONT 1; echo after"], text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert not any(l.startswith("failed") for l in lines), r.stdout  # they were delivered
    state = next(l for l in lines if l.startswith("State:"))
    assert state.split()[1] in ("S", "R"), state
    assert "after" in lines


_GRAB = r"""
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
rt = ctypes.CDLL("librt.so.1", use_errno=True)
rt.mq_open.restype = ctypes.c_int
n = 0
while libc.inotify_init() >= 0:
    n += 1
print("inotify", n, os.strerror(ctypes.get_errno()), flush=True)
q = 0
while rt.mq_open(f"/grab{q}".encode(), os.O_CREAT | os.O_RDWR, 0o600, None) >= 0:
    q += 1
print("mqueues", q, os.strerror(ctypes.get_errno()), flush=True)
print("ready", flush=True)
time.sleep(30)
"""

_TRY = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
rt = ctypes.CDLL("librt.so.1", use_errno=True)
fd = libc.inotify_init()
print("inotify", "ok" if fd >= 0 else os.strerror(ctypes.get_errno()))
name = f"/sbx-test-{os.getpid()}".encode()
q = rt.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, None)
print("mqueue", "ok" if q >= 0 else os.strerror(ctypes.get_errno()))
if q >= 0:
    rt.mq_unlink(name)
"""


def test_a_sandbox_cannot_use_up_the_hosts_inotify_or_mqueue_budget():
    # The kernel counts inotify instances and message queue bytes per user at every user
    # namespace level, charging a namespace's use to the user who owns it in the parent.
    # Sandboxes' namespaces owned by host root shared root's budget (128 inotify
    # instances, 800 KiB of queues): one sandbox could take it all from the host's own
    # services and from every other sandbox.
    holder = subprocess.Popen([str(SBX), "run", "-q", "--", "python3", "-c", _GRAB],
                              stdout=subprocess.PIPE, env=sbx_env(), text=True)
    try:
        lines = [holder.stdout.readline().strip() for _ in range(3)]
        assert lines[2] == "ready", lines
        assert int(lines[0].split()[1]) >= 100 and int(lines[1].split()[1]) >= 5, lines
        # The sandbox's user namespace belongs to its own host uid (NS_GET_OWNER_UID).
        pid1 = host_pid1(holder)
        with open(f"/proc/{pid1}/uid_map") as f:
            uid_base = int(f.read().split()[1])
        fd = os.open(f"/proc/{pid1}/ns/user", os.O_RDONLY)
        try:
            owner = struct.unpack("I", fcntl.ioctl(fd, 0xB704, b"\0" * 4))[0]
        finally:
            os.close(fd)
        assert owner == uid_base != 0, (owner, uid_base)
        host = subprocess.run(["python3", "-c", _TRY], capture_output=True, text=True)
        assert host.stdout.split() == ["inotify", "ok", "mqueue", "ok"], host
        other = sbx_run(["python3", "-c", _TRY], text=True)
        assert other.stdout.split() == ["inotify", "ok", "mqueue", "ok"], other
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=30)


def test_loop_devices_do_not_show_host_paths(tmp_path):
    # Volumes are ext4 images on loop devices, and sysfs is not namespaced for block
    # devices: /sys/block/loopN/loop/backing_file showed any sandbox the host path of
    # every volume image (names of other sandboxes' volumes included).
    img = tmp_path / "secret-volume-name.img"
    img.write_bytes(b"\0" * (1 << 20))
    dev = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        name = os.path.basename(dev)
        r = sbx_run(["/bin/sh", "-c", f"cat /sys/block/{name}/loop/backing_file "
                     f"/sys/class/block/{name}/loop/backing_file; echo end; "
                     "ls /sys/devices/virtual/block"], text=True)
        assert "secret-volume-name" not in r.stdout + r.stderr, r.stdout
        assert r.stdout.split() == ["end"], r.stdout  # nothing read, the directory empty
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


_PTYS = r"""
import os, time
fds = []
try:
    while len(fds) < 4000:
        fds.append(os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY))
except OSError as e:
    print("ptys", len(fds), e.strerror, flush=True)
print("ready", flush=True)
time.sleep(30)
"""


def test_a_sandbox_cannot_take_every_pty_of_the_host():
    # ptys are counted host-wide (kernel.pty.max, 4096 by default, 1024 of them kept for
    # the host's own devpts), not per user or cgroup: one sandbox held the other 3,072
    # and every other sandbox's openpty failed with ENOSPC. Each devpts has a max of 64.
    holder = subprocess.Popen([str(SBX), "run", "-q", "--", "python3", "-c", _PTYS],
                              stdout=subprocess.PIPE, env=sbx_env(), text=True)
    try:
        lines = [holder.stdout.readline().split() for _ in range(2)]
        assert lines[1] == ["ready"], lines
        assert lines[0][0] == "ptys" and 0 < int(lines[0][1]) <= 64, lines
        other = sbx_run(["python3", "-c", "import os; os.openpty(); print('ok')"], text=True)
        assert other.stdout.split() == ["ok"], other.stderr
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=30)


_SOCKBUF = r"""
import socket
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(512)
keep, total = [], 0
while len(keep) < 256 and total < 96 << 20:
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    c.setblocking(False)
    try:
        while True:
            total += c.send(b"x" * 65536)
    except BlockingIOError:
        pass
    keep.append((c, s))
print("queued", len(keep), total >> 20, flush=True)
"""


def test_socket_buffers_count_against_the_memory_limit():
    # Data queued in loopback TCP connections that nobody reads is kernel memory. On
    # cgroup v1 it is charged to a sandbox only once the memory cgroup's kmem.tcp limit
    # is written: a sandbox of 128 MiB held 167 MiB in 16 connections, beyond its own
    # bound and out of the host-wide tcp_mem budget that every socket on the host uses.
    r = sbx_run(["python3", "-c", _SOCKBUF], opts=["--memory", "32"], text=True)
    assert r.returncode == 0, r.stderr
    _, conns, mib = r.stdout.split()
    assert int(mib) < 40, r.stdout  # 32 MiB, and a few KiB each socket always gets


def test_no_netlink_sockets_but_names_still_resolve():
    # What a netlink socket queues is charged to no cgroup: 64 route sockets sent bogus
    # requests and never read took 512 MiB from the host while their sandbox showed
    # 13 MiB. AF_NETLINK is refused; getaddrinfo still answers (glibc assumes both
    # families when it cannot ask the kernel which are configured).
    code = ("import errno, socket\n"
            "try:\n"
            "    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n"
            "    print('netlink allowed')\n"
            "except OSError as e:\n"
            "    print('netlink', errno.errorcode[e.errno])\n"
            "print(sorted({a[4][0] for a in socket.getaddrinfo('localhost', 80, "
            "flags=socket.AI_ADDRCONFIG)}))\n")
    r = sbx_run(["python3", "-c", code], text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "netlink EAFNOSUPPORT", r.stdout
    assert "127.0.0.1" in lines[1], r.stdout
