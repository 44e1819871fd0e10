"""sbxd facing a compromised sbx-init: code in a sandbox that took over PID 1 answers sbxd's
agent frames however it likes (hostile_agent.py, run as --init). sbxd must stay up and
bounded, answer each request with an error or sane data, and keep serving other sandboxes
(docs/protocol.md, "Limits": what sbxd takes from an agent)."""
import json
import pathlib
import shutil
import subprocess

import pytest

from .conftest import sbxd_factory

AGENT = pathlib.Path(__file__).with_name("hostile_agent.py")


@pytest.fixture
def hostile(python_image):
    """start(mode): a private sbxd whose sandboxes run hostile_agent.py in that mode as PID 1,
    and one sandbox of it. The kernel cannot run a script from sbxd's close-on-exec init fd,
    so the agent is a static launcher running python3 -c on the script."""
    gen = sbxd_factory()
    start = next(gen)
    dirs = []

    def launch(mode):
        script = AGENT.read_text().replace('MODE = "honest"', f'MODE = "{mode}"')
        work = pathlib.Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True,
                                           check=True).stdout.strip())
        dirs.append(work)
        (work / "agent.c").write_text(
            '#include <unistd.h>\nextern char **environ;\nint main (void) { char *a[] = { '
            '"/usr/bin/python3", "-c", ' + json.dumps(script) + ', 0 }; '
            'execve (a[0], a, environ); return 127; }\n')
        subprocess.run(["cc", "-static", "-o", str(work / "agent"), str(work / "agent.c")],
                       check=True)
        d = start("--init", str(work / "agent"), "--pool-size", "0")
        return d, d.create()

    yield launch
    try:
        next(gen, None)
    finally:
        for w in dirs:
            shutil.rmtree(w, ignore_errors=True)


def fine(d, sbxd, sid_ok):
    """sbxd d still answers, and the other sbxd's sandbox (the real sbx-init) still runs."""
    assert d.get("/health", timeout=10).status_code == 200
    r = sbxd.exec(sid_ok, ["echo", "ok"])
    assert r.status_code == 200 and r.json()["stdout"] == "ok\n", r.text


@pytest.fixture
def other(sbxd):
    sid = sbxd.create()
    yield sid
    sbxd.post("/sandbox/terminate", {"sandbox_id": sid})


def test_endless_answers_are_cut(hostile, sbxd, other):
    # Without the limits sbxd took every PROC_INFO / FILE_INFO / output frame into memory
    # (gigabytes within seconds) and the request never ended.
    d, sid = hostile("flood")
    for path, body in [("/sandbox/process/list", {}),
                       ("/sandbox/files/list", {"path": "/"}),
                       ("/sandbox/process/output", {"process_id": 1, "max_bytes": 65536}),
                       ("/sandbox/files/read", {"path": "/x"})]:
        r = d.post(path, {"sandbox_id": sid, **body}, timeout=60)
        assert r.status_code in (413, 500), (path, r.text)
        fine(d, sbxd, other)


def test_absurd_fields_and_foreign_frames(hostile, sbxd, other):
    d, sid = hostile("absurd")
    for path, body in [("/sandbox/process/list", {}), ("/sandbox/files/list", {"path": "/"}),
                       ("/sandbox/files/stat", {"path": "/x"}),
                       ("/sandbox/process/output", {"process_id": 1})]:
        r = d.post(path, {"sandbox_id": sid, **body}, timeout=60)
        assert r.status_code == 200, (path, r.text)
        r.json()
    # Output and an EXEC_EXIT of another exec id are not this exec's.
    r = d.exec(sid, ["true"], timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["stdout_b64"] == "/wBtaW5l", r.text  # b"\xff\x00mine"
    fine(d, sbxd, other)


@pytest.mark.parametrize("mode", ["bad_version", "huge_len", "truncated"])
def test_broken_agent_is_an_error(hostile, sbxd, other, mode):
    d, sid = hostile(mode)
    r = d.post("/sandbox/files/stat", {"sandbox_id": sid, "path": "/x"}, timeout=60)
    assert r.status_code == 500, r.text
    assert r.json()["error"]["code"] == "exec_failed"
    fine(d, sbxd, other)


def test_agent_without_hello_times_out(hostile, sbxd, other):
    # An agent that accepts and never sends HELLO held the request (before it counted
    # against the sandbox's request limit) until the sandbox ended.
    d, sid = hostile("no_hello")
    r = d.post("/sandbox/files/stat", {"sandbox_id": sid, "path": "/x"}, timeout=60)
    assert r.status_code == 500, r.text
    assert "could not reach the sandbox agent" in r.json()["error"]["message"]
    r = d.exec(sid, ["true"], timeout=60)
    assert r.status_code == 500, r.text
    assert "no hello" in d.log()
    fine(d, sbxd, other)
