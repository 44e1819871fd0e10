"""`sbx run` behaves like a one-shot runner: exit codes, stdin, env, workdir, images."""
import pytest

from sandbox_util import sbx_run

pytestmark = pytest.mark.usefixtures("python_image")


def test_exit_status_is_the_commands():
    assert sbx_run(["/bin/sh", "-c", "exit 7"]).returncode == 7
    assert sbx_run(["/bin/true"]).returncode == 0
    assert sbx_run(["/bin/sh", "-c", "kill -TERM $$"]).returncode == 128 + 15


def test_python_answers_to_all_names():
    r = sbx_run(["/bin/sh", "-c", "python -c 'print(2+2)' && python3 --version && pip --version"],
                text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "4"
    assert lines[1].startswith("Python 3.11")
    assert lines[2].startswith("pip ")


def test_missing_program_is_127_with_message():
    r = sbx_run(["no-such-program-xyz"], text=True)
    assert r.returncode == 127
    assert "no-such-program-xyz" in r.stderr


def test_not_executable_is_126():
    r = sbx_run(["/etc/passwd"], text=True)
    assert r.returncode == 126
    assert "/etc/passwd" in r.stderr


def test_stdin_is_forwarded_with_eof():
    data = bytes(range(256)) * 4000
    r = sbx_run(["/bin/sh", "-c", "cat; echo END >&2"], stdin=data)
    assert r.returncode == 0
    assert r.stdout == data
    assert r.stderr.strip() == b"END"


def test_env_and_workdir():
    r = sbx_run(["/bin/sh", "-c", "echo $FOO; pwd"], opts=["--env", "FOO=bar baz",
                                                          "--workdir", "/tmp"], text=True)
    assert r.stdout.splitlines() == ["bar baz", "/tmp"]


def test_files_do_not_persist_between_runs():
    sbx_run(["/bin/sh", "-c", "echo x > /root/persist"])
    r = sbx_run(["/bin/sh", "-c", "cat /root/persist"], text=True)
    assert r.returncode != 0


def test_image_files_are_root_owned_and_writable_by_root_inside():
    r = sbx_run(["/bin/sh", "-c",
                 "stat -c '%u:%g' /etc/passwd && echo extra >> /etc/passwd && tail -1 /etc/passwd"],
                text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["0:0", "extra"]


def test_debian_image_has_no_python():
    r = sbx_run(["/bin/sh", "-c", "command -v python3 || echo none"],
                opts=["--image", "debian:bookworm"], text=True, timeout=900)
    assert r.stdout.strip() == "none"


@pytest.mark.parametrize("opts", [["--image", "nope:1"], ["--cpu", "abc"], ["--memory", "-5"],
                                  ["--timeout", "0"], ["--timeout", "86401"], ["--env", "NOEQ"],
                                  ["--workdir", "relative"]])
def test_bad_options_are_refused_clearly(opts):
    r = sbx_run(["/bin/true"], opts=opts, text=True)
    assert r.returncode == 2, (opts, r.returncode, r.stderr)
    assert r.stderr.startswith("sbx run:"), r.stderr


def has_interpreter(path):
    """True if the ELF file asks for a dynamic loader (has a PT_INTERP program header)."""
    import struct
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2  # 64-bit
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return any(struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 3
               for i in range(phnum))


def test_sbx_init_and_probe_are_static():
    """sbx-init is PID 1 of every image: it must not depend on the image's libc."""
    from conftest import PROBE, SBX_INIT
    assert not has_interpreter(SBX_INIT)
    assert not has_interpreter(PROBE)


def _is_open(fd):
    import os
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_spawn_works_when_the_caller_holds_more_fds_than_the_sandbox_may():
    """sbxd holds ~4 fds per sandbox; a caller with fds above the sandbox's RLIMIT_NOFILE
    (4096 by default) must still spawn, and none of those fds may reach the sandbox."""
    import os
    import resource
    import subprocess
    from conftest import SBX, sbx_env
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 6000
    if hard < want + 100:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want + 100}")
    fds = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (want + 100, hard))
    try:
        fd = os.open("/dev/null", os.O_RDONLY)
        fds.append(fd)
        while len(fds) < want:
            fds.append(os.dup(fd))
        # Pass every open fd (pytest's too), so that no low slot is free in sbx either.
        inherited = [int(x) for x in os.listdir("/proc/self/fd") if int(x) > 2]
        inherited = [x for x in inherited if x in fds or _is_open(x)]
        r = subprocess.run([str(SBX), "run", "-q", "--", "/bin/sh", "-c", "ls /proc/self/fd"],
                           capture_output=True, text=True, env=sbx_env(), pass_fds=inherited,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert sorted(int(x) for x in r.stdout.split()) == [0, 1, 2, 3]  # 3: ls's own dir
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
