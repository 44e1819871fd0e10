"""The reference documents' flows, unchanged but for the host, under every prefix."""
import json
import re
import subprocess
import textwrap

import pytest

from .conftest import PREFIXES

ID_RE = re.compile(r"^sb_[0-9a-f]{20}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def curl(url, body, auth=True):
    """POST like the reference curl examples (Content-Type + an Authorization header)."""
    cmd = ["curl", "-s", "-w", "\n%{http_code}", "-X", "POST", url]
    if auth:
        cmd += ["-H", "Authorization: Bearer sk-your-api-key"]
    cmd += ["-H", "Content-Type: application/json", "-d", body]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    text, _, code = out.rpartition("\n")
    return int(code), json.loads(text)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_reference_curl_flow(sbxd, prefix):
    base = sbxd.url + prefix + "/sandbox"
    code, r = curl(f"{base}/create", '{"image": "python:3.11", "timeout": 300}')
    assert code == 200, r
    sid = r["sandbox_id"]
    sbxd.created.append(sid)
    assert ID_RE.match(sid)
    assert r["status"] == "running"
    assert r["image"] == "python:3.11"
    assert r["timeout"] == 300
    assert TIME_RE.match(r["created_at"]) and TIME_RE.match(r["expires_at"])
    assert r["resources"]["cpu"] == 1 and r["resources"]["memory_mb"] == 1024

    code, r = curl(f"{base}/exec",
                   json.dumps({"sandbox_id": sid, "command": ["python", "-c", "print(2+2)"]}))
    assert code == 200, r
    assert r["stdout"] == "4\n" and r["stderr"] == ""
    assert r["returncode"] == 0 and r["exit_code"] == 0
    assert isinstance(r["duration_ms"], int)

    # The jarvisclaw example: a shell string with quotes.
    code, r = curl(f"{base}/exec",
                   json.dumps({"sandbox_id": sid, "command": 'python -c "print(2+2)"'}))
    assert code == 200 and r["stdout"] == "4\n", r

    code, r = curl(f"{base}/status", json.dumps({"sandbox_id": sid}))
    assert code == 200, r
    assert r["sandbox_id"] == sid and r["status"] == "running"
    assert r["commands_executed"] == 2
    assert TIME_RE.match(r["created_at"]) and TIME_RE.match(r["expires_at"])

    code, r = curl(f"{base}/terminate", json.dumps({"sandbox_id": sid}))
    assert code == 200
    assert r == {"sandbox_id": sid, "status": "terminated"}

    code, r = curl(f"{base}/status", json.dumps({"sandbox_id": sid}))
    assert code == 200 and r["status"] == "terminated"
    assert r["reason"] == "terminated by caller" and TIME_RE.match(r["terminated_at"])


def test_readme_curl_without_content_type(sbxd):
    """`curl -X POST .../create -d '{}'` (form content type, as curl sends it) works."""
    out = subprocess.run(["curl", "-s", "-X", "POST", sbxd.url + "/v1/sandbox/create", "-d", "{}"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    r = json.loads(out)
    sbxd.created.append(r["sandbox_id"])
    assert r["status"] == "running" and r["timeout"] == 300
    assert sbxd.post("/sandbox/terminate", {"sandbox_id": r["sandbox_id"]}).status_code == 200


REFERENCE_PY = '''
import requests

BASE = "{base}"
HEADERS = {{
    "Authorization": "Bearer sk-your-api-key",
    "Content-Type": "application/json",
}}

# Create a sandbox
resp = requests.post(f"{{BASE}}/create", headers=HEADERS, json={{
    "timeout": 300,
}})
sandbox_id = resp.json()["sandbox_id"]
print(f"Created sandbox: {{sandbox_id}}")

# Execute a command
resp = requests.post(f"{{BASE}}/exec", headers=HEADERS, json={{
    "sandbox_id": sandbox_id,
    "command": "python -c \\"import math; print(math.pi)\\"",
}})
print(resp.json()["stdout"])

# Check status
resp = requests.post(f"{{BASE}}/status", headers=HEADERS, json={{
    "sandbox_id": sandbox_id,
}})
print(resp.json()["status"])

# Terminate when done
requests.post(f"{{BASE}}/terminate", headers=HEADERS, json={{
    "sandbox_id": sandbox_id,
}})
'''


@pytest.mark.parametrize("prefix", PREFIXES)
def test_reference_python_example(sbxd, prefix):
    script = REFERENCE_PY.format(base=sbxd.url + prefix + "/sandbox")
    r = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    m = re.match(r"^Created sandbox: (sb_[0-9a-f]{20})$", lines[0])
    assert m, r.stdout
    sbxd.created.append(m.group(1))
    assert lines[1] == "3.141592653589793"
    assert lines[3] == "running"
    st = sbxd.post("/sandbox/status", {"sandbox_id": m.group(1)}).json()
    assert st["status"] == "terminated" and st["reason"] == "terminated by caller"


def test_multi_step_state(sbxd):
    sid = sbxd.create()
    r = sbxd.exec(sid, "mkdir -p /work && echo step-one > /work/notes.txt && cd /work && pwd")
    assert r.json()["stdout"] == "/work\n"
    r = sbxd.exec(sid, ["python", "-c",
                        "open('/work/notes.txt','a').write('step-two\\n'); print('ok')"])
    assert r.json()["stdout"] == "ok\n"
    r = sbxd.exec(sid, ["cat", "/work/notes.txt"])
    assert r.json()["stdout"] == "step-one\nstep-two\n"
    st = sbxd.post("/sandbox/status", {"sandbox_id": sid}).json()
    assert st["commands_executed"] == 3
    # status describes the resources as create did, pids and disk included
    assert st["resources"]["pids"] > 0 and st["resources"]["disk_mb"] > 0, st
    sbxd.post("/sandbox/terminate", {"sandbox_id": sid})


def test_sandboxes_are_separate(sbxd):
    a, b = sbxd.create(), sbxd.create()
    assert sbxd.exec(a, "echo A > /tmp/who").json()["exit_code"] == 0
    r = sbxd.exec(b, "cat /tmp/who").json()
    assert r["exit_code"] != 0 and r["stdout"] == ""
    for s in (a, b):
        sbxd.post("/sandbox/terminate", {"sandbox_id": s})


def test_create_options_env_workdir_resources(sbxd):
    r = sbxd.post("/sandbox/create", {"image": "debian:bookworm", "timeout": 60, "cpu": 0.5,
                                      "memory": 256, "env": {"GREETING": "hi", "X_1": ""},
                                      "workdir": "/tmp"})
    assert r.status_code == 200, r.text
    body = r.json()
    sid = body["sandbox_id"]
    sbxd.created.append(sid)
    assert body["image"] == "debian:bookworm" and body["timeout"] == 60
    assert body["resources"]["cpu"] == 0.5 and body["resources"]["memory_mb"] == 256
    out = sbxd.exec(sid, 'echo "$GREETING:$X_1:$(pwd)"').json()
    assert out["stdout"] == "hi::/tmp\n"
    # Per-exec env and workdir override the sandbox's, for that exec only.
    out = sbxd.exec(sid, 'echo "$GREETING:$(pwd)"', env={"GREETING": "yo"}, workdir="/").json()
    assert out["stdout"] == "yo:/\n"
    out = sbxd.exec(sid, 'echo "$GREETING"').json()
    assert out["stdout"] == "hi\n"
    # The memory limit is the sandbox's cgroup limit (v1, or v2).
    limits = [open(p).read().strip() for p in (
        f"/sys/fs/cgroup/memory/sbx/{sid}/memory.limit_in_bytes",
        f"/sys/fs/cgroup/sbx/{sid}/memory.max") if __import__("os").path.exists(p)]
    assert limits == [str(256 * 1024 * 1024)], limits
    sbxd.post("/sandbox/terminate", {"sandbox_id": sid})
    # Fractions print as written, not as the nearest double's 17 digits (0.10000000000000001).
    r = sbxd.post("/sandbox/create", {"cpu": 0.1, "timeout": 60})
    assert r.status_code == 200, r.text
    sbxd.created.append(r.json()["sandbox_id"])
    assert '"cpu":0.1,' in r.text, r.text
    sbxd.post("/sandbox/terminate", {"sandbox_id": r.json()["sandbox_id"]})


def test_exec_output_details(sbxd):
    sid = sbxd.create()
    # Exit status and stderr.
    r = sbxd.exec(sid, "echo out; echo err >&2; exit 7").json()
    assert (r["exit_code"], r["returncode"], r["stdout"], r["stderr"]) == (7, 7, "out\n", "err\n")
    assert r["truncated"] is False and r["timed_out"] is False
    # A program that does not exist is the caller's error, answered like a shell.
    r = sbxd.exec(sid, ["no-such-program"]).json()
    assert r["exit_code"] == 127 and "no-such-program" in r["stderr"]
    r = sbxd.exec(sid, "no-such-program").json()
    assert r["exit_code"] == 127
    # Bytes that are not UTF-8: valid JSON, replacement characters, exact bytes in base64.
    raw = bytes([0xff, 0xfe, 0x41, 0x00, 0xe2, 0x82, 0xac, 0xc3])
    r = sbxd.exec(sid, ["python3", "-c", f"import sys; sys.stdout.buffer.write({raw!r})"]).json()
    assert r["stdout"] == "\ufffd\ufffdA\x00\u20ac\ufffd"
    import base64
    assert base64.b64decode(r["stdout_b64"]) == raw
    assert "stderr_b64" not in r
    # stdin, including a NUL byte.
    r = sbxd.exec(sid, ["python3", "-c", "import sys; d=sys.stdin.buffer.read(); print(len(d), d)"],
                  stdin="a\x00b").json()
    assert r["stdout"] == "3 b'a\\x00b'\n"
    # Output is bounded while it streams; the response says so.
    r = sbxd.exec(sid, "head -c 5000000 /dev/zero | tr '\\0' x; echo done >&2",
                  max_output=1000).json()
    assert r["truncated"] is True and r["stdout"] == "x" * 1000 and r["stderr"] == "done\n"
    r = sbxd.exec(sid, "head -c 3000000 /dev/zero | tr '\\0' y").json()
    assert r["truncated"] is True and len(r["stdout"]) == 1024 * 1024
    sbxd.post("/sandbox/terminate", {"sandbox_id": sid})


def test_list_and_health(sbxd):
    sid = sbxd.create()
    gone = sbxd.create()
    sbxd.post("/sandbox/terminate", {"sandbox_id": gone})
    for prefix in PREFIXES:
        h = sbxd.get("/health", prefix=prefix)
        assert h.status_code == 200 and h.json()["status"] == "ok"
        running = sbxd.get("/sandbox/list?status=running", prefix=prefix).json()["sandboxes"]
        terminated = sbxd.get("/sandbox/list?status=terminated", prefix=prefix).json()["sandboxes"]
        every = sbxd.get("/sandbox/list", prefix=prefix).json()
        assert sid in [s["sandbox_id"] for s in running]
        assert gone not in [s["sandbox_id"] for s in running]
        assert gone in [s["sandbox_id"] for s in terminated]
        assert every["count"] == len(every["sandboxes"]) >= 2
    sbxd.post("/sandbox/terminate", {"sandbox_id": sid})
