"""Helpers for the issue-6 tests: reading NDJSON/SSE event streams, generators run inside."""
import base64
import json
import pathlib

import requests


def events(resp):
    """Yield the JSON events of an NDJSON response as they arrive."""
    buf = b""
    for chunk in resp.iter_content(chunk_size=None):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
    assert buf.strip() == b"", f"stream ended inside an event: {buf[:200]!r}"


def data_of(ev):
    d = ev["data"]
    return base64.b64decode(d) if ev.get("encoding") == "base64" else d.encode()


def stream_exec(sbxd, sid, command, headers=None, **body):
    return requests.post(sbxd.url + "/v1/sandbox/exec",
                         json={"sandbox_id": sid, "command": command, "stream": True, **body},
                         stream=True, timeout=300, headers=headers or {})


# Writes SIZE bytes to stdout in writes of mixed sizes (1 byte .. 1 MiB), binary or text
# (text: [a-z0-9] and newlines only, so a pty's \n -> \r\n is the only change), and the
# sha256 of what it wrote to stderr (or, with a pty, as the last line "DIGEST <hex>").
GEN = r'''
import hashlib, os, random, sys
size, text, pty = int(sys.argv[1]), sys.argv[2] == "text", sys.argv[3] == "pty"
rnd = random.Random(1234)
h = hashlib.sha256()
out = sys.stdout.buffer
left = size
alpha = b"abcdefghijklmnopqrstuvwxyz0123456789"
sizes = [1, 7, 100, 4096, 65535, 65536, 65537, 300000, 1 << 20]
while left:
    n = min(left, rnd.choice(sizes))
    if text:
        b = bytes(alpha[x % 36] if x % 50 else 10 for x in rnd.randbytes(n))
    else:
        b = rnd.randbytes(n)
    out.write(b)
    if rnd.random() < 0.5:
        out.flush()
    h.update(b)
    left -= n
out.flush()
if pty:
    out.write(b"\nDIGEST " + h.hexdigest().encode() + b"\n")
    out.flush()
else:
    sys.stderr.write(h.hexdigest())
'''


def put_gen(sbxd, sid):
    r = sbxd.post("/sandbox/files/write", {"sandbox_id": sid, "path": "/tmp/gen.py",
                                           "content": GEN})
    assert r.status_code == 200, r.text


def host_rss_peak(pid):
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])


def reset_rss_peak(pid):
    pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")
