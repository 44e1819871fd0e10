"""Streaming exec: complete, ordered, lossless, flow-controlled; NDJSON and SSE; pty."""
import hashlib
import json
import time

import requests

from .helpers import data_of, events, host_rss_peak, put_gen, reset_rss_peak, stream_exec

MB50 = 50 * 1000 * 1000


def collect(resp):
    out, err, seen = bytearray(), bytearray(), []
    exit_ev = None
    for ev in events(resp):
        seen.append(ev["type"])
        if ev["type"] == "stdout":
            assert ev["offset"] == len(out)
            out += data_of(ev)
        elif ev["type"] == "stderr":
            assert ev["offset"] == len(err)
            err += data_of(ev)
        elif ev["type"] == "exit":
            exit_ev = ev
    return bytes(out), bytes(err), exit_ev, seen


def test_stream_50mb_binary_complete_and_in_order(sbxd, sid):
    put_gen(sbxd, sid)
    reset_rss_peak(sbxd.proc.pid)
    before = host_rss_peak(sbxd.proc.pid)
    r = stream_exec(sbxd, sid, ["python3", "/tmp/gen.py", str(MB50), "bin", "nopty"])
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    out, err, ex, seen = collect(r)
    assert seen[0] == "start" and seen[-1] == "exit"
    assert ex["exit_code"] == 0, err[-500:]
    assert len(out) == MB50
    assert hashlib.sha256(out).hexdigest() == err.decode()
    assert ex["stdout_bytes"] == MB50
    assert ex["usage"]["cpu_ms"] > 0 and ex["usage"]["max_rss_kb"] > 0
    grew = host_rss_peak(sbxd.proc.pid) - before
    assert grew < 64 * 1024, f"sbxd peak RSS grew by {grew} kB"


def test_stream_50mb_under_pty(sbxd, sid):
    put_gen(sbxd, sid)
    r = stream_exec(sbxd, sid, ["python3", "/tmp/gen.py", str(MB50), "text", "pty"], pty=True)
    out, err, ex, _ = collect(r)
    assert ex["exit_code"] == 0
    assert err == b""  # a pty merges both streams
    text = out.replace(b"\r\n", b"\n")
    body, _, tail = text.rpartition(b"\nDIGEST ")
    assert len(body) == MB50, len(body)
    assert hashlib.sha256(body).hexdigest() == tail.strip().decode()


def test_stalled_reader_loses_nothing(sbxd, sid):
    put_gen(sbxd, sid)
    size = 20 * 1000 * 1000
    r = stream_exec(sbxd, sid, ["python3", "/tmp/gen.py", str(size), "bin", "nopty"])
    out, err = bytearray(), bytearray()
    stalled = False
    for ev in events(r):
        if ev["type"] == "stdout":
            assert ev["offset"] == len(out)
            out += data_of(ev)
            if not stalled and len(out) > 1000000:
                stalled = True
                time.sleep(6)  # the producer blocks meanwhile; nothing may be dropped
        elif ev["type"] == "stderr":
            err += data_of(ev)
        elif ev["type"] == "exit":
            assert ev["exit_code"] == 0
    assert stalled
    assert len(out) == size
    assert hashlib.sha256(out).hexdigest() == err.decode()


def test_sse_and_utf8_split(sbxd, sid):
    # A multi-byte character written in two pieces arrives whole, as text.
    cmd = ["python3", "-c", "import sys,time;b='h\u00e9\u20ac'.encode();"
           "sys.stdout.buffer.write(b[:2]);sys.stdout.flush();time.sleep(0.3);"
           "sys.stdout.buffer.write(b[2:]);sys.stdout.flush()"]
    r = stream_exec(sbxd, sid, cmd, headers={"Accept": "text/event-stream"})
    assert r.headers["content-type"].startswith("text/event-stream")
    text = r.content.decode("utf-8")
    evs = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(l.split(": ", 1) for l in block.split("\n"))
        evs.append((lines["event"], json.loads(lines["data"])))
    assert [e for e, _ in evs][0] == "start" and evs[-1][0] == "exit"
    out = "".join(d["data"] for e, d in evs if e == "stdout")
    assert out == "h\u00e9\u20ac"
    assert all("encoding" not in d for e, d in evs if e == "stdout")


def test_keepalive_while_quiet(sbxd, sid):
    r = stream_exec(sbxd, sid, "sleep 12; echo done")
    types = [ev["type"] for ev in events(r)]
    assert "keepalive" in types
    assert types[-1] == "exit"


def test_stream_stdin_and_exit_code(sbxd, sid):
    r = stream_exec(sbxd, sid, "wc -c; exit 7", stdin="x" * 100000)
    out, _, ex, _ = collect(r)
    assert out.strip() == b"100000"
    assert ex["exit_code"] == 7


def test_client_disconnect_kills_foreground_stream(sbxd, sid):
    r = stream_exec(sbxd, sid, "echo started; sleep 3600; touch /tmp/survived")
    for ev in events(r):
        if ev["type"] == "stdout":
            break
    r.close()
    # Killed (not left to its hour of sleep): it leaves the process list.
    deadline = time.monotonic() + 60
    while True:
        procs = sbxd.post("/sandbox/process/list", {"sandbox_id": sid}).json()["processes"]
        if not any("survived" in p["command"] for p in procs):
            break
        assert time.monotonic() < deadline, procs
        time.sleep(0.1)
    st = sbxd.post("/sandbox/files/stat", {"sandbox_id": sid, "path": "/tmp/survived"})
    assert st.status_code == 404


def test_stream_on_terminated_sandbox(sbxd):
    sid = sbxd.create()
    r = stream_exec(sbxd, sid, "echo x; sleep 30")
    it = events(r)
    assert next(it)["type"] == "start"
    sbxd.post("/sandbox/terminate", {"sandbox_id": sid})
    rest = list(it)
    assert rest[-1]["type"] == "error" and rest[-1]["code"] == "sandbox_terminated"


def test_exec_validation(sbxd, sid):
    bad = [
        {"stream": "yes"}, {"background": 1}, {"stream": True, "background": True},
        {"pty": "x"}, {"pty": {"rows": 0}}, {"pty": True, "cols": 5000},
        {"exec_id": ""}, {"exec_id": "a" * 129}, {"exec_id": "bad id"}, {"exec_id": 5},
        {"exec_id": "a\u0000b"}, {"stream": True, "encoding": "latin1"},
    ]
    for extra in bad:
        r = sbxd.post("/sandbox/exec", {"sandbox_id": sid, "command": "true", **extra})
        assert r.status_code == 400, (extra, r.text)
    r = sbxd.post("/sandbox/exec", {"sandbox_id": "sb_00000000000000000000", "command": "true",
                                    "stream": True})
    assert r.status_code == 404
    # refused before the stream starts: a real HTTP status, not a 200 with an error event
    r = sbxd.post("/sandbox/exec", {"sandbox_id": sid, "command": "true", "stream": True,
                                    "workdir": "/no/such/dir"})
    assert r.status_code == 400 and "chdir" in r.json()["error"]["message"]
    r = sbxd.post("/sandbox/process/output", {"sandbox_id": sid, "process_id": 99999,
                                              "follow": True})
    assert r.status_code == 404 and r.json()["error"]["code"] == "process_not_found"
