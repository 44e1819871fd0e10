"""Background processes: survive disconnects, output from offsets with no gap or duplicate,
exec_id idempotency, stdin with EOF, signals, resize, list, wait, validation."""
import time

import requests

from .helpers import data_of, events

COUNTER = ("import sys,time\n"
           "for i in range(N):\n"
           "    print('line %06d' % i, flush=True)\n"
           "    if i % 50 == 0: time.sleep(0.05)\n")


def bg(sbxd, sid, command, **body):
    r = sbxd.post("/sandbox/exec", {"sandbox_id": sid, "command": command,
                                    "background": True, **body})
    assert r.status_code == 200, r.text
    return r.json()


def read_all(sbxd, sid, pid, off=0):
    """Poll /process/output from off until the process ended and everything was read."""
    out = b""
    while True:
        r = sbxd.post("/sandbox/process/output", {"sandbox_id": sid, "process_id": pid,
                                                   "stdout_offset": off, "wait_ms": 2000})
        assert r.status_code == 200, r.text
        j = r.json()
        assert j["stdout_start"] == off  # nothing was dropped before this read
        chunk = j["stdout"].encode()
        assert j["stdout_offset"] == off + len(chunk)
        out += chunk
        off = j["stdout_offset"]
        if not j["running"] and not j["more"]:
            return out, j


def test_background_survives_disconnect_and_resumes(sbxd, sid):
    n = 3000
    p = bg(sbxd, sid, ["python3", "-c", COUNTER.replace("N", str(n))])
    pid = p["process_id"]
    assert p["running"] is True and p["pid"] > 0
    # Follow it as a stream, take some output, then drop the connection.
    r = requests.post(sbxd.url + "/v1/sandbox/process/output",
                      json={"sandbox_id": sid, "process_id": pid, "follow": True},
                      stream=True, timeout=60)
    got = b""
    for ev in events(r):
        if ev["type"] == "start":
            assert ev["stdout_offset"] == 0
        if ev["type"] == "stdout":
            assert ev["offset"] == len(got)
            got += data_of(ev)
            if len(got) > 5000:
                break
    r.close()
    # Resume from exactly what we have; the process was not affected by the disconnect.
    rest, last = read_all(sbxd, sid, pid, off=len(got))
    lines = (got + rest).decode().splitlines()
    assert lines == ["line %06d" % i for i in range(n)]
    assert last["exit_code"] == 0


def test_output_offsets_utf8_and_binary(sbxd, sid):
    p = bg(sbxd, sid, ["python3", "-c",
                       "import sys;sys.stdout.buffer.write('\u20ac'.encode()*1000 + b'\\xff');"
                       "sys.stderr.write('err')"])
    w = sbxd.post("/sandbox/process/wait", {"sandbox_id": sid, "process_id": p["process_id"]})
    assert w.json()["running"] is False
    # A read that ends inside a character stops before it (text, no replacement char).
    r = sbxd.post("/sandbox/process/output", {"sandbox_id": sid, "process_id": p["process_id"],
                                               "max_bytes": 100}).json()
    assert r["encoding"] == "utf-8" and r["stdout"] == "\u20ac" * 33
    assert r["stdout_offset"] == 99 and r["more"] is True
    # The tail has a byte that is not UTF-8: base64.
    r = sbxd.post("/sandbox/process/output", {"sandbox_id": sid, "process_id": p["process_id"],
                                               "stdout_offset": 2997}).json()
    assert r["encoding"] == "base64"
    import base64
    assert base64.b64decode(r["stdout"]) == "\u20ac".encode() + b"\xff"
    assert base64.b64decode(r["stderr"]) == b"err"


def test_exec_id_runs_once(sbxd, sid):
    body = {"sandbox_id": sid, "command": "echo run >> /tmp/runs; echo out", "exec_id": "job-42"}
    a = sbxd.post("/sandbox/exec", body).json()
    b = sbxd.post("/sandbox/exec", body).json()
    assert a["stdout"] == b["stdout"] == "out\n"
    assert a["existing"] is False and b["existing"] is True
    assert a["process_id"] == b["process_id"]
    # streamed and background retries of the same id also find it
    r = requests.post(sbxd.url + "/v1/sandbox/exec", json={**body, "stream": True}, timeout=60)
    assert '"existing":true' in r.text and '"out\\n"' in r.text
    c = sbxd.post("/sandbox/exec", {**body, "background": True}).json()
    assert c["existing"] is True and c["process_id"] == a["process_id"]
    runs = sbxd.post("/sandbox/files/read", {"sandbox_id": sid, "path": "/tmp/runs"}).json()
    assert runs["content"] == "run\n"
    # a background exec retried after a lost answer: still once
    d = bg(sbxd, sid, "echo bg >> /tmp/bgruns; sleep 1", exec_id="bg-1")
    e = bg(sbxd, sid, "echo bg >> /tmp/bgruns; sleep 1", exec_id="bg-1")
    assert d["process_id"] == e["process_id"] and e["existing"] is True
    sbxd.post("/sandbox/process/wait", {"sandbox_id": sid, "process_id": d["process_id"]})
    assert sbxd.post("/sandbox/files/read",
                     {"sandbox_id": sid, "path": "/tmp/bgruns"}).json()["content"] == "bg\n"


def test_stdin_eof_reaches_reader(sbxd, sid):
    p = bg(sbxd, sid, ["python3", "-c",
                       "import sys,hashlib;d=sys.stdin.buffer.read();"
                       "print(len(d), hashlib.sha256(d).hexdigest())"])
    pid = p["process_id"]
    import base64, hashlib, os
    blob = os.urandom(700000)  # more than one agent frame
    for i in range(0, len(blob), 300000):
        r = sbxd.post("/sandbox/process/stdin", {
            "sandbox_id": sid, "process_id": pid, "encoding": "base64",
            "data": base64.b64encode(blob[i:i + 300000]).decode()})
        assert r.status_code == 200, r.text
        assert r.json()["running"] is True
    r = sbxd.post("/sandbox/process/stdin", {"sandbox_id": sid, "process_id": pid, "data": "",
                                             "eof": True})
    assert r.status_code == 200
    w = sbxd.post("/sandbox/process/wait", {"sandbox_id": sid, "process_id": pid}).json()
    assert w["running"] is False and w["exit_code"] == 0
    out = sbxd.post("/sandbox/process/output", {"sandbox_id": sid, "process_id": pid}).json()
    assert out["stdout"] == f"{len(blob)} {hashlib.sha256(blob).hexdigest()}\n"
    # after EOF stdin is closed
    r = sbxd.post("/sandbox/process/stdin", {"sandbox_id": sid, "process_id": pid, "data": "x"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "stdin_closed"


def test_pty_stdin_eof_and_resize(sbxd, sid):
    p = bg(sbxd, sid, ["python3", "-c",
                       "import sys,os,signal,time\n"
                       "signal.signal(signal.SIGWINCH, lambda *a: print('size', os.get_terminal_size(), flush=True))\n"
                       "print('ready', flush=True)\n"
                       "print('got', repr(sys.stdin.read()), flush=True)\n"],
           pty={"rows": 10, "cols": 40})
    pid = p["process_id"]
    deadline = time.monotonic() + 20
    while "ready" not in sbxd.post("/sandbox/process/output",
                                   {"sandbox_id": sid, "process_id": pid}).json()["stdout"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = sbxd.post("/sandbox/process/resize", {"sandbox_id": sid, "process_id": pid,
                                              "rows": 50, "cols": 132})
    assert r.status_code == 200, r.text
    sbxd.post("/sandbox/process/stdin", {"sandbox_id": sid, "process_id": pid,
                                         "data": "hello\n", "eof": True})
    w = sbxd.post("/sandbox/process/wait", {"sandbox_id": sid, "process_id": pid}).json()
    assert w["exit_code"] == 0
    out = sbxd.post("/sandbox/process/output", {"sandbox_id": sid, "process_id": pid}).json()
    assert "columns=132, lines=50" in out["stdout"]
    assert "got 'hello\\n'" in out["stdout"]


def test_signals(sbxd, sid):
    p = bg(sbxd, sid, ["sh", "-c", "trap 'echo got-usr1; exit 3' USR1; echo armed; "
                       "while :; do sleep 0.1; done"])
    pid = p["process_id"]
    deadline = time.monotonic() + 20
    while "armed" not in sbxd.post("/sandbox/process/output",
                                   {"sandbox_id": sid, "process_id": pid}).json()["stdout"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = sbxd.post("/sandbox/process/signal", {"sandbox_id": sid, "process_id": pid,
                                              "signal": "SIGUSR1"})
    assert r.status_code == 200, r.text
    w = sbxd.post("/sandbox/process/wait", {"sandbox_id": sid, "process_id": pid}).json()
    assert w["exit_code"] == 3
    out = sbxd.post("/sandbox/process/output", {"sandbox_id": sid, "process_id": pid}).json()
    assert "got-usr1" in out["stdout"]

    q = bg(sbxd, sid, "sleep 100")
    r = sbxd.post("/sandbox/process/signal", {"sandbox_id": sid, "process_id": q["process_id"],
                                              "signal": 15})
    w = sbxd.post("/sandbox/process/wait", {"sandbox_id": sid, "process_id": q["process_id"]})
    assert w.json()["exit_code"] == 143 and w.json()["signal"] == 15


def test_wait_deadline_and_list(sbxd, sid):
    p = bg(sbxd, sid, "sleep 30", exec_id="sleeper")
    w = sbxd.post("/sandbox/process/wait", {"sandbox_id": sid, "process_id": p["process_id"],
                                            "wait_ms": 500}).json()
    assert w["running"] is True and w["exit_code"] is None  # answered at the deadline
    procs = sbxd.post("/sandbox/process/list", {"sandbox_id": sid}).json()["processes"]
    mine = [x for x in procs if x["process_id"] == p["process_id"]]
    assert mine and mine[0]["exec_id"] == "sleeper" and mine[0]["running"] is True
    sbxd.post("/sandbox/process/signal", {"sandbox_id": sid, "process_id": p["process_id"],
                                          "signal": "KILL"})


def test_process_validation(sbxd, sid):
    cases = [
        ("/sandbox/process/output", {"process_id": "1"}),
        ("/sandbox/process/output", {"process_id": 0}),
        ("/sandbox/process/output", {"process_id": 1, "stdout_offset": -1}),
        ("/sandbox/process/output", {"process_id": 1, "wait_ms": 10 ** 9}),
        ("/sandbox/process/output", {}),
        ("/sandbox/process/stdin", {"process_id": 1, "data": 5}),
        ("/sandbox/process/stdin", {"process_id": 1, "data": "!!", "encoding": "base64"}),
        ("/sandbox/process/signal", {"process_id": 1, "signal": "SIGNOPE"}),
        ("/sandbox/process/signal", {"process_id": 1, "signal": 0}),
        ("/sandbox/process/signal", {"process_id": 1}),
        ("/sandbox/process/resize", {"process_id": 1, "rows": 0, "cols": 10}),
        ("/sandbox/process/resize", {"process_id": 1}),
    ]
    for path, body in cases:
        r = sbxd.post(path, {"sandbox_id": sid, **body})
        assert r.status_code == 400, (path, body, r.text)
    r = sbxd.post("/sandbox/process/wait", {"sandbox_id": sid, "process_id": 999999})
    assert r.status_code == 404 and r.json()["error"]["code"] == "process_not_found"
    r = sbxd.post("/sandbox/process/list", {"sandbox_id": "sb_00000000000000000000"})
    assert r.status_code == 404
    q = bg(sbxd, sid, "sleep 5")
    r = sbxd.post("/sandbox/process/resize", {"sandbox_id": sid, "process_id": q["process_id"],
                                              "rows": 5, "cols": 5})
    assert r.status_code == 400  # not a pty


def test_background_process_survives_sbxd_restart(python_image):
    """sbxd killed -9 and restarted: the process and its output are still there, from the
    same offsets (they live in sbx-init, not in sbxd)."""
    from api.conftest import Sbxd, finish, make_state_dir
    d = Sbxd(make_state_dir()).start()
    try:
        sid = d.create(timeout=300)
        p = bg(d, sid, ["python3", "-c", COUNTER.replace("N", "2000")], exec_id="survivor")
        first = d.post("/sandbox/process/output", {"sandbox_id": sid,
                                                    "process_id": p["process_id"],
                                                    "wait_ms": 5000}).json()
        got = first["stdout"].encode()
        d.kill9()
        d.start()
        rest, last = read_all(d, sid, p["process_id"], off=first["stdout_offset"])
        assert (got + rest).decode().splitlines() == ["line %06d" % i for i in range(2000)]
        assert last["exit_code"] == 0
        again = bg(d, sid, "echo never", exec_id="survivor")
        assert again["existing"] is True and again["process_id"] == p["process_id"]
    finally:
        finish(d)


def test_plain_exec_with_exec_id_or_pty_answers_like_exec(sbxd, sid):
    import base64
    r = sbxd.post("/sandbox/exec", {"sandbox_id": sid, "exec_id": "bin-1",
                                    "command": ["printf", "a\\377b"]}).json()
    assert r["stdout"] == "a\ufffdb" and base64.b64decode(r["stdout_b64"]) == b"a\xffb"
    assert r["exit_code"] == 0 and r["usage"]["max_rss_kb"] > 0
    r = sbxd.post("/sandbox/exec", {"sandbox_id": sid, "pty": True, "command": "echo hi"}).json()
    assert r["stdout"] == "hi\r\n" and "stdout_b64" not in r


def test_background_stdin_field_and_timeout(sbxd, sid):
    p = bg(sbxd, sid, "wc -c", stdin="abc")
    w = sbxd.post("/sandbox/process/wait", {"sandbox_id": sid, "process_id": p["process_id"]})
    assert w.json()["exit_code"] == 0
    out = sbxd.post("/sandbox/process/output", {"sandbox_id": sid,
                                                "process_id": p["process_id"]}).json()
    assert out["stdout"].strip() == "3"
    q = bg(sbxd, sid, "sleep 100", timeout=1)
    w = sbxd.post("/sandbox/process/wait", {"sandbox_id": sid, "process_id": q["process_id"]})
    assert w.json()["timed_out"] is True and w.json()["exit_code"] == 137
