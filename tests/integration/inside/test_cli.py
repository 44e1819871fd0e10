"""sbx exec -i / -t, sbx logs [-f], sbx cp against a real sbxd."""
import os
import pathlib
import pty
import select
import subprocess
import time

from conftest import SBX  # tests/integration/conftest.py


def sbx(d, *args, stdin=None, timeout=120):
    env = dict(os.environ, SBX_URL=d.url)
    return subprocess.run([str(SBX), *args], input=stdin, capture_output=True, env=env,
                          timeout=timeout)


def test_exec_stdin_streamed(sbxd, sid):
    data = bytes(range(256)) * 4000
    r = sbx(sbxd, "exec", "-i", sid, "--", "sh", "-c", "wc -c; exit 4", stdin=data)
    assert r.returncode == 4, r.stderr
    assert r.stdout.strip() == str(len(data)).encode()


def test_exec_tty_without_terminal(sbxd, sid):
    r = sbx(sbxd, "exec", "-t", sid, "--", "sh", "-c", "tty; echo err >&2", stdin=b"")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"/dev/pts/") and b"err\r\n" in r.stdout


def test_exec_it_on_a_terminal(sbxd, sid):
    """A local pty plays the user's terminal: keys go through, raw, and the status comes back."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["SBX_URL"] = sbxd.url
        os.execv(str(SBX), [str(SBX), "exec", "-it", sid, "--", "sh"])
    out = b""

    def read_until(needle, seconds=30):
        nonlocal out
        deadline = time.monotonic() + seconds
        while needle not in out and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    break
        return needle in out

    time.sleep(1)
    os.write(fd, b"echo $((6*7))\r")
    assert read_until(b"42"), out
    os.write(fd, b"exit 5\r")
    read_until(b"\x00never", seconds=3)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 5, out


def test_logs(sbxd, sid):
    b = sbx(sbxd, "exec", "--background", "--shell", sid, "--",
            "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.3; done")
    assert b.returncode == 0, b.stderr
    p = b.stdout.decode().strip()
    assert p.isdigit()
    f = sbx(sbxd, "logs", "-f", sid, p)
    assert f.returncode == 0, f.stderr
    assert f.stdout == b"out1\nout2\nout3\n" and f.stderr == b"err1\nerr2\nerr3\n"
    a = sbx(sbxd, "logs", sid, p)
    assert a.stdout == b"out1\nout2\nout3\n"
    bad = sbx(sbxd, "logs", sid, "999999")
    assert bad.returncode == 1 and b"process_not_found" in bad.stderr


def test_logs_of_a_process_that_never_stops_writing_ends(sbxd, sid):
    # Without -f, sbx logs asked for more while the answer said "more": a process writing
    # faster than the client reads kept it printing for as long as the process ran.
    b = sbx(sbxd, "exec", "--background", sid, "--", "yes", "x" * 200)
    assert b.returncode == 0, b.stderr
    p = b.stdout.decode().strip()
    start = time.monotonic()
    a = sbx(sbxd, "logs", sid, p, timeout=20)
    assert a.returncode == 0, a.stderr
    assert time.monotonic() - start < 10
    # at most what the 8 MiB ring held when asked, plus the 1 MiB answers read meanwhile
    assert 0 < len(a.stdout) <= 16 << 20
    assert set(a.stdout) == set(b"x\n")


def test_cp_files_and_directories(sbxd, sid, tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(3_000_000))
    src.chmod(0o750)
    r = sbx(sbxd, "cp", str(src), f"{sid}:/work/in/")
    assert r.returncode == 0, r.stderr
    st = sbxd.post("/sandbox/files/stat", {"sandbox_id": sid, "path": "/work/in/blob.bin"}).json()
    assert st["size"] == 3_000_000 and st["mode"] == "0750"
    back = tmp_path / "back.bin"
    r = sbx(sbxd, "cp", f"{sid}:/work/in/blob.bin", str(back))
    assert r.returncode == 0 and back.read_bytes() == src.read_bytes()
    # stdin / stdout
    r = sbx(sbxd, "cp", "-", f"{sid}:/work/piped", stdin=b"through a pipe")
    assert r.returncode == 0
    r = sbx(sbxd, "cp", f"{sid}:/work/piped", "-")
    assert r.stdout == b"through a pipe"
    # a directory tree both ways
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("A")
    (tree / "sub" / "b.txt").write_text("B")
    r = sbx(sbxd, "cp", str(tree), f"{sid}:/work/tree")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    r = sbx(sbxd, "cp", f"{sid}:/work/tree", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "a.txt").read_text() == "A" and (out / "sub" / "b.txt").read_text() == "B"
    # errors: missing remote file, nothing left behind locally
    r = sbx(sbxd, "cp", f"{sid}:/nope", str(tmp_path / "nope"))
    assert r.returncode == 1 and not (tmp_path / "nope").exists()
    r = sbx(sbxd, "cp", "a", "b")
    assert r.returncode == 2


_FAKE_TAR = r"""#!/usr/bin/python3
import io, sys, tarfile
# What code in a sandbox can make its own tar emit: a setuid-root program, a file of
# another owner and a device node.
out = tarfile.open(fileobj=sys.stdout.buffer, mode="w|")
for name, kind, mode, uid in (("./suid", tarfile.REGTYPE, 0o4755, 0),
                              ("./theirs", tarfile.REGTYPE, 0o644, 4321),
                              ("./disk", tarfile.BLKTYPE, 0o666, 0)):
    t = tarfile.TarInfo(name)
    t.type, t.mode, t.uid, t.gid = kind, mode, uid, uid
    if kind == tarfile.BLKTYPE:
        t.devmajor, t.devminor = 7, 0
        out.addfile(t)
    else:
        t.size = 4
        out.addfile(t, io.BytesIO(b"data"))
out.close()
"""


def test_cp_out_of_a_sandbox_keeps_its_archive_powerless(sbxd, sid, tmp_path):
    # The sandbox decides what its archive holds (here its own tar is replaced). Extracted
    # by sbx cp as host root, it made a setuid-root program, a file owned by another uid
    # and a device node on the host.
    w = {"sandbox_id": sid, "path": "/usr/local/bin/tar", "content": _FAKE_TAR, "mode": "0755"}
    assert sbxd.post("/sandbox/files/write", w).status_code == 200
    assert sbxd.exec(sid, ["mkdir", "-p", "/work/evil"]).json()["exit_code"] == 0
    out = tmp_path / "evil"
    r = sbx(sbxd, "cp", f"{sid}:/work/evil", str(out))
    assert not (out / "disk").exists(), r.stderr  # tar reports the refused device
    for name in ("suid", "theirs"):
        st = (out / name).stat()
        assert st.st_uid == os.geteuid(), (name, st.st_uid)
        assert not st.st_mode & 0o6000, (name, oct(st.st_mode))


_SYMLINK_TAR = r"""#!/usr/bin/python3
import io, sys, tarfile
# A sandbox's own tar: "./" asks for mode 0777 on the destination, then files
# go through "link", a symlink an earlier sbx cp left in the destination, and a hard link
# points there too.
out = tarfile.open(fileobj=sys.stdout.buffer, mode="w|")
t = tarfile.TarInfo("./")
t.type, t.mode, t.mtime = tarfile.DIRTYPE, 0o777, 0
out.addfile(t)
for name in ("./link/secret", "./link/new"):
    t = tarfile.TarInfo(name)
    t.size = 5
    out.addfile(t, io.BytesIO(b"PWNED"))
t = tarfile.TarInfo("./hl")
t.type, t.linkname = tarfile.LNKTYPE, "./link/secret"
out.addfile(t)
out.close()
"""


def test_cp_out_of_a_sandbox_writes_only_into_its_destination(sbxd, sid, tmp_path):
    # The local tar followed symlinks already in the destination: a first copy left
    # out/link -> victim, the second wrote victim/secret through it (as root: any file of
    # the host), and the archive's "./" set the mode of the destination itself.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "secret").write_text("host")
    plant = f"mkdir -p /work/plant && ln -s {victim} /work/plant/link"
    assert sbxd.exec(sid, ["sh", "-c", plant]).json()["exit_code"] == 0
    out = tmp_path / "out"
    r = sbx(sbxd, "cp", f"{sid}:/work/plant", str(out))
    assert r.returncode == 0, r.stderr
    assert os.readlink(out / "link") == str(victim)
    out.chmod(0o700)
    w = {"sandbox_id": sid, "path": "/usr/local/bin/tar", "content": _SYMLINK_TAR,
         "mode": "0755"}
    assert sbxd.post("/sandbox/files/write", w).status_code == 200
    r = sbx(sbxd, "cp", f"{sid}:/work/plant", str(out))
    assert r.returncode == 1, r.stderr  # tar reports what it was refused
    assert (victim / "secret").read_text() == "host"
    assert sorted(os.listdir(victim)) == ["secret"]
    assert not (out / "hl").exists()
    assert oct(out.stat().st_mode & 0o7777) == "0o700"
    # A plain tree into a directory that has files: extracted, what was there kept.
    os.unlink(out / "link")
    (out / "keep").write_text("k")
    assert sbxd.post("/sandbox/files/remove", {"sandbox_id": sid,
                                               "path": "/usr/local/bin/tar"}).status_code == 200
    tree = "mkdir -p /work/t/a/b /work/t/c && echo x > /work/t/a/b/f && ln /work/t/a/b/f /work/t/c/h"
    assert sbxd.exec(sid, ["sh", "-c", tree]).json()["exit_code"] == 0
    r = sbx(sbxd, "cp", f"{sid}:/work/t", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "keep").read_text() == "k" and not (out / "link").exists()
    assert (out / "c" / "h").read_text() == "x\n"
    assert (out / "c" / "h").stat().st_ino == (out / "a" / "b" / "f").stat().st_ino


_LONG_NAME_TAR = r"""#!/usr/bin/python3
import sys
# A GNU long-name header that claims 700 MiB, then the name: GNU tar allocates and fills
# whatever size the archive says.
size = 700 << 20
h = bytearray(512)
h[0:13] = b"././@LongLink"
for at, field in ((100, b"0000644"), (108, b"0000000"), (116, b"0000000"),
                  (124, b"%011o" % size), (136, b"00000000000")):
    h[at:at + len(field)] = field
h[156:157], h[257:265], h[148:156] = b"L", b"ustar  \0", b" " * 8
h[148:155] = b"%06o\0" % sum(h)
sys.stdout.buffer.write(bytes(h))
for _ in range(size >> 20):
    sys.stdout.buffer.write(b"a" * (1 << 20))
"""

_MAXRSS_OF_CHILDREN = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True)
sys.stderr.buffer.write(r.stderr)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_cp_out_of_a_sandbox_bounds_the_local_tars_memory(sbxd, sid, tmp_path):
    # The local tar held a 700 MiB file name in memory because the sandbox's archive said
    # so; a larger one would have taken the host's memory.
    w = {"sandbox_id": sid, "path": "/usr/local/bin/tar", "content": _LONG_NAME_TAR,
         "mode": "0755"}
    assert sbxd.post("/sandbox/files/write", w).status_code == 200
    assert sbxd.exec(sid, ["mkdir", "-p", "/work/d"]).json()["exit_code"] == 0
    r = subprocess.run(["/usr/bin/python3", "-c", _MAXRSS_OF_CHILDREN, str(SBX), "cp",
                        f"{sid}:/work/d", str(tmp_path / "d")], capture_output=True,
                       env=dict(os.environ, SBX_URL=sbxd.url), timeout=60)
    rc, maxrss_kib = map(int, r.stdout.split())
    assert rc == 1 and b"local tar failed" in r.stderr, r.stderr
    assert maxrss_kib < 256 << 10, maxrss_kib


def test_cp_of_a_file_never_writes_through_what_a_sandbox_left(sbxd, sid, tmp_path):
    # A directory copied out of a sandbox may hold a symlink to any host file, or a FIFO:
    # copying one file out onto that name wrote the host file through the link (as root),
    # or hung on the FIFO. Now both are refused; a regular file is still replaced.
    victim = tmp_path / "victim"
    victim.write_text("host")
    plant = f"mkdir -p /work/p && ln -s {victim} /work/p/f && mkfifo /work/p/q && echo new > /work/f"
    assert sbxd.exec(sid, ["sh", "-c", plant]).json()["exit_code"] == 0
    out = tmp_path / "out"
    assert sbx(sbxd, "cp", f"{sid}:/work/p", str(out)).returncode == 0
    assert os.readlink(out / "f") == str(victim)
    r = sbx(sbxd, "cp", f"{sid}:/work/f", str(out / "f"))
    assert r.returncode == 1 and b"symbolic link" in r.stderr, r.stderr
    r = sbx(sbxd, "cp", f"{sid}:/work/f", str(out))  # the same name, inside the directory
    assert r.returncode == 1 and b"symbolic link" in r.stderr, r.stderr
    assert victim.read_text() == "host"
    r = sbx(sbxd, "cp", f"{sid}:/work/f", str(out / "q"), timeout=20)
    assert r.returncode == 1, r.stderr
    (out / "g").write_text("old content, longer than the new")
    assert sbx(sbxd, "cp", f"{sid}:/work/f", str(out / "g")).returncode == 0
    assert (out / "g").read_text() == "new\n"


def test_cp_of_a_file_that_fails_leaves_a_device_destination(sbxd, sid, tmp_path):
    # A failed copy removes the partial file it wrote, but a character device destination
    # (`sbx cp ID:/f /dev/null`, allowed as one) is no partial copy: as root, a sandbox
    # whose file could not be read (here a socket, which stat calls no directory) made
    # sbx cp unlink /dev/null. A node of the same device stands in for it here.
    code = "import socket; socket.socket(socket.AF_UNIX).bind('/tmp/sock')"
    assert sbxd.exec(sid, ["python3", "-c", code]).json()["exit_code"] == 0
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
    r = sbx(sbxd, "cp", f"{sid}:/tmp/sock", str(dev))
    assert r.returncode == 1, r.stderr
    assert dev.is_char_device()
    plain = tmp_path / "plain"  # a regular file is still not left half written
    plain.write_text("old")
    assert sbx(sbxd, "cp", f"{sid}:/tmp/sock", str(plain)).returncode == 1
    assert not plain.exists()
