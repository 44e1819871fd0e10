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
