"""Every error the API answers: status, code, and a message naming what was wrong."""
import glob
import json
import os
import signal
import subprocess
import time

import pytest
import requests

from .conftest import PREFIXES, SBXD_BIN


def err(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_unknown_sandbox_is_404(sbxd, prefix):
    for path in ("/sandbox/exec", "/sandbox/status", "/sandbox/terminate"):
        body = {"sandbox_id": "sb_00000000000000000000", "command": "true"}
        err(sbxd.post(path, body, prefix=prefix), 404, "sandbox_not_found")
        # Ids are matched exactly, never by prefix or pattern; malformed ids are not found.
        for bad in ("sb_", "sb_0", "sb-xxx", "sb_%", "../../etc", "x" * 5000):
            body["sandbox_id"] = bad
            err(sbxd.post(path, body, prefix=prefix), 404, "sandbox_not_found")


def test_prefix_of_a_real_id_is_not_found(sbxd):
    sid = sbxd.create()
    for probe in (sid[:-1], sid + "0", sid.upper(), " " + sid):
        err(sbxd.post("/sandbox/status", {"sandbox_id": probe}), 404, "sandbox_not_found")
    sbxd.post("/sandbox/terminate", {"sandbox_id": sid})


def test_terminated_sandbox_is_410(sbxd):
    sid = sbxd.create()
    assert sbxd.post("/sandbox/terminate", {"sandbox_id": sid}).status_code == 200
    msg = err(sbxd.exec(sid, "true"), 410, "sandbox_terminated")
    assert sid in msg
    err(sbxd.post("/sandbox/terminate", {"sandbox_id": sid}), 410, "sandbox_terminated")
    st = sbxd.post("/sandbox/status", {"sandbox_id": sid})
    assert st.status_code == 200 and st.json()["status"] == "terminated"


def test_wrong_method_is_405_with_allow(sbxd):
    for prefix in PREFIXES:
        r = requests.get(sbxd.url + prefix + "/sandbox/create", timeout=10)
        err(r, 405, "method_not_allowed")
        assert r.headers["Allow"] == "POST"
        r = requests.post(sbxd.url + prefix + "/health", json={}, timeout=10)
        err(r, 405, "method_not_allowed")
        assert r.headers["Allow"] == "GET"
        r = requests.delete(sbxd.url + prefix + "/sandbox/list", timeout=10)
        err(r, 405, "method_not_allowed")


def test_unknown_route_is_404(sbxd):
    for path in ("/v1/sandbox/create/", "/v2/sandbox/create", "/v1/sandbox", "/",
                 "/api/v1/modal/sandbox/run", "/v1/marketplace/compute", "//v2//health"):
        err(requests.post(sbxd.url + path, json={}, timeout=10), 404, "not_found")


def test_doubled_slashes_are_one(sbxd):
    """The reference service writes its base URL with a trailing slash
    (https://blockrun.ai/api/v1/modal/); a client that joins it with "/sandbox/create"
    asks for .../modal//sandbox/create. Runs of '/' count as one, as most servers do."""
    r = requests.post(sbxd.url + "/api/v1/modal//sandbox/create", json={"timeout": 60}, timeout=60)
    assert r.status_code == 200, r.text
    sid = r.json()["sandbox_id"]
    sbxd.created.append(sid)
    r = requests.post(sbxd.url + "//v1//sandbox///exec", json={"sandbox_id": sid, "command": "echo hi"},
                      timeout=60)
    assert r.status_code == 200 and r.json()["stdout"] == "hi\n", r.text
    r = requests.get(f"{sbxd.url}/v1/sandbox//{sid}//files?path=/etc/hostname", timeout=60)
    assert r.status_code == 200 and r.content == b"sandbox\n", r.text
    assert requests.get(sbxd.url + "/v1//health", timeout=10).status_code == 200


def test_body_over_10mb_is_413(sbxd):
    big = json.dumps({"sandbox_id": "sb_0", "command": "x" * (10 * 1024 * 1024)})
    # Declared length: refused before the body is read.
    r = requests.post(sbxd.url + "/v1/sandbox/exec", data=big,
                      headers={"Content-Type": "application/json"}, timeout=60)
    err(r, 413, "payload_too_large")
    # Chunked, no declared length: counted while it streams.
    def gen():
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536].encode()
    r = requests.post(sbxd.url + "/v1/sandbox/exec", data=gen(),
                      headers={"Content-Type": "application/json"}, timeout=60)
    err(r, 413, "payload_too_large")
    # Just under the limit is read (and then judged on its content).
    ok = json.dumps({"sandbox_id": "sb_00000000000000000000", "command": "x" * (9 * 1024 * 1024)})
    err(requests.post(sbxd.url + "/v1/sandbox/exec", data=ok, timeout=60), 404,
        "sandbox_not_found")


def test_non_json_content_type_is_415(sbxd):
    for ct in ("text/plain", "multipart/form-data; boundary=x", "application/xml"):
        r = requests.post(sbxd.url + "/v1/sandbox/create", data="{}",
                          headers={"Content-Type": ct}, timeout=10)
        err(r, 415, "unsupported_media_type")
    r = requests.post(sbxd.url + "/v1/sandbox/status", data='{"sandbox_id": "sb_00"}',
                      headers={"Content-Type": "application/json; charset=utf-8"}, timeout=10)
    err(r, 404, "sandbox_not_found")


def test_cross_origin_browser_request_is_403(sbxd):
    r = requests.post(sbxd.url + "/v1/sandbox/create", json={},
                      headers={"Origin": "https://evil.example"}, timeout=10)
    err(r, 403, "forbidden")


def test_authorization_header_is_ignored_while_auth_is_off(sbxd):
    r = sbxd.post("/sandbox/status", {"sandbox_id": "sb_00"},
                  headers={"Authorization": "Bearer whatever"})
    err(r, 404, "sandbox_not_found")


BAD_CREATE = [
    ({"image": "ubuntu:latest"}, "image"),
    ({"image": "python:3.11\u0000x"}, "image"),
    ({"image": 3}, "image"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": 86401}, "timeout"),
    ({"timeout": "300"}, "timeout"),
    ({"timeout": 1.5}, "timeout"),
    ({"timeout": True}, "timeout"),
    ({"timeout": 1e300}, "timeout"),
    ({"cpu": 0}, "cpu"),
    ({"cpu": 1000}, "cpu"),
    ({"cpu": "1"}, "cpu"),
    ({"memory": 1}, "memory"),
    ({"memory": 10 ** 12}, "memory"),
    ({"env": ["A=1"]}, "env"),
    ({"env": {"A": 1}}, "env.A"),
    ({"env": {"1A": "x"}}, "env"),
    ({"env": {"A=B": "x"}}, "env"),
    ({"env": {"A\u0000B": "x"}}, "body"),  # jansson refuses NUL in keys while parsing
    ({"env": {"A": "x\u0000y"}}, "env.A"),
    ({"env": {f"V{i}": "x" for i in range(300)}}, "env"),
    ({"workdir": "relative/path"}, "workdir"),
    ({"workdir": "/tmp\u0000/x"}, "workdir"),
]


@pytest.mark.parametrize("body,field", BAD_CREATE)
def test_invalid_create_is_400_naming_the_field(sbxd, body, field):
    before = sbxd.get("/health").json()["sandboxes_running"]
    msg = err(sbxd.post("/sandbox/create", body), 400, "invalid_request")
    assert msg.startswith(field + ":"), msg
    # Nothing half-made.
    assert sbxd.get("/health").json()["sandboxes_running"] == before


@pytest.fixture(scope="module")
def live(sbxd):
    sid = sbxd.create()
    yield sid
    sbxd.post("/sandbox/terminate", {"sandbox_id": sid})


BAD_EXEC = [
    ({}, "sandbox_id"),
    ({"sandbox_id": 5}, "sandbox_id"),
    ({"sandbox_id": "sb_x\u0000y"}, "sandbox_id"),
    ({"command": None}, "command"),
    ({"command": ""}, "command"),
    ({"command": []}, "command"),
    ({"command": [""]}, "command[0]"),
    ({"command": ["echo", 1]}, "command[1]"),
    ({"command": ["echo", "a\u0000b"]}, "command[1]"),
    ({"command": "echo a\u0000b"}, "command"),
    ({"command": {"a": 1}}, "command"),
    ({"command": ["x"] * 5000}, "command"),
    ({"env": {"A": ["x"]}}, "env.A"),
    ({"workdir": "tmp"}, "workdir"),
    ({"stdin": 5}, "stdin"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": 86401}, "timeout"),
    ({"timeout": "5"}, "timeout"),
    ({"max_output": 0}, "max_output"),
    ({"max_output": 1 << 40}, "max_output"),
]


@pytest.mark.parametrize("patch,field", BAD_EXEC)
def test_invalid_exec_is_400_naming_the_field(sbxd, live, patch, field):
    body = {"sandbox_id": live, "command": "echo hi", **patch}
    if patch.get("command", 0) is None:
        del body["command"]
    if "sandbox_id" not in patch and field == "sandbox_id":
        del body["sandbox_id"]
    msg = err(sbxd.post("/sandbox/exec", body), 400, "invalid_request")
    assert msg.startswith(field + ":"), msg


@pytest.mark.parametrize("raw", [b"{", b"[]", b"\"x\"", b"null", b"{\"a\":1,\"a\":2}",
                                 b"\xff\xfe", b"{\"sandbox_id\": \"\xff\"}"])
def test_malformed_json_is_400(sbxd, raw):
    for path in ("/sandbox/create", "/sandbox/exec", "/sandbox/status", "/sandbox/terminate"):
        r = requests.post(sbxd.url + "/v1" + path, data=raw,
                          headers={"Content-Type": "application/json"}, timeout=10)
        msg = err(r, 400, "invalid_request")
        assert msg.startswith("body:"), msg


def test_unknown_fields_are_ignored(sbxd):
    r = sbxd.post("/sandbox/create", {"timeout": 30, "gpu": "H100", "x-extra": {"a": [1]}})
    assert r.status_code == 200, r.text
    sbxd.created.append(r.json()["sandbox_id"])
    sbxd.post("/sandbox/terminate", {"sandbox_id": r.json()["sandbox_id"]})


def test_list_with_bad_status_is_400(sbxd):
    msg = err(sbxd.get("/sandbox/list?status=zombie"), 400, "invalid_request")
    assert msg.startswith("status:")


def test_at_capacity_is_503_with_retry_after(own_sbxd):
    d = own_sbxd("--max-sandboxes", "2")
    a, b = d.create(), d.create()
    r = d.post("/sandbox/create", {})
    err(r, 503, "at_capacity")
    assert int(r.headers["Retry-After"]) > 0
    # A terminated sandbox frees its slot once it is gone.
    d.post("/sandbox/terminate", {"sandbox_id": a})
    deadline = time.monotonic() + 30
    while d.get("/health").json()["sandboxes_running"] > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    c = d.create()
    for s in (b, c):
        d.post("/sandbox/terminate", {"sandbox_id": s})


def test_exec_failed_when_sbx_itself_cannot_run_the_command(sbxd):
    """exec_failed is for sbx's own failures: here the agent's socket has vanished."""
    sid = sbxd.create(memory=512)  # cold: a pool member comes connected to its agent already
    sock = sbxd.state_dir / "run" / sid / "agent.sock"
    assert sock.exists()
    sock.rename(sock.with_name("agent.sock.moved"))
    try:
        err(sbxd.exec(sid, "true"), 500, "exec_failed")
    finally:
        sock.with_name("agent.sock.moved").rename(sock)
    assert sbxd.exec(sid, "echo back").json()["stdout"] == "back\n"
    sbxd.post("/sandbox/terminate", {"sandbox_id": sid})


def test_exec_in_a_missing_workdir_is_the_callers_error(sbxd):
    """A workdir that does not exist is the caller's mistake: 400, as a streamed exec
    answers it, not 500 exec_failed (which was what a plain exec said)."""
    sid = sbxd.create()
    for body in ({"workdir": "/no/such/dir"}, {"workdir": "/no/such/dir", "stream": True}):
        msg = err(sbxd.exec(sid, "true", **body), 400, "invalid_request")
        assert "chdir" in msg and "/no/such/dir" in msg, msg
    created = sbxd.create(workdir="/gone")
    msg = err(sbxd.exec(created, "true"), 400, "invalid_request")
    assert "/gone" in msg, msg
    assert sbxd.exec(created, "pwd", workdir="/").json()["stdout"] == "/\n"
    for s in (sid, created):
        sbxd.post("/sandbox/terminate", {"sandbox_id": s})


def test_non_loopback_listen_is_refused(tmp_path):
    r = subprocess.run([SBXD_BIN, "--listen", "0.0.0.0:18999", "--state-dir", str(tmp_path),
                        "--no-prepare-image"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "loopback" in r.stderr


def test_garbage_never_crashes_sbxd(sbxd):
    """Random and hostile bodies on every route: always a JSON answer, sbxd stays up."""
    import random
    rnd = random.Random(1234)
    routes = ["/sandbox/create", "/sandbox/exec", "/sandbox/status", "/sandbox/terminate"]
    samples = [b"", b"{}", b"{" * 5000 + b"}" * 5000, b"[" * 100000, b"\x00" * 100,
               b'{"sandbox_id": {"a": [1, {"b": null}]}, "command": [[["x"]]]}',
               b'{"command": ["a"], "sandbox_id": "sb_' + b"a" * 100000 + b'"}',
               b'{"env": {"' + b"A" * 300 + b'": "x"}}', b'{"timeout": -0.0}',
               b'{"timeout": 1e-300}', b'{"cpu": NaN}', b'{"memory": 18446744073709551616}']
    samples += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300)))
                for _ in range(100)]
    for i, body in enumerate(samples):
        r = requests.post(sbxd.url + "/v1" + routes[i % 4], data=body,
                          headers={"Content-Type": "application/json"}, timeout=60)
        assert r.status_code in (200, 400, 404), (body[:80], r.status_code, r.text[:200])
        r.json()
        if r.status_code == 200:  # a create with all defaults, or similar
            sid = r.json().get("sandbox_id")
            if sid:
                sbxd.created.append(sid)
                sbxd.post("/sandbox/terminate", {"sandbox_id": sid})
    assert sbxd.get("/health").status_code == 200


def test_a_path_cannot_forge_log_records(sbxd):
    """MHD decodes %0A in the path, and sbxd logs the path: a newline there wrote a record
    of the client's choosing. Control bytes are logged as \\xHH now."""
    forged = "2026-01-01T00:00:00Z info: forged record"
    r = requests.get(sbxd.url + "/v1/health%0A" + forged.replace(" ", "%20"), timeout=10)
    assert r.status_code == 404
    log = sbxd.log()
    assert not any(line.startswith(forged) for line in log.splitlines()), log[-2000:]
    assert "\\x0a" + forged in log, log[-2000:]
