"""Files: byte-exact round trips (JSON and raw, up to 100 MB streamed with bounded sbxd
memory), every operation, tar up/download, and escape attempts against every endpoint."""
import base64
import hashlib
import io
import os
import pathlib
import tarfile
import uuid

import pytest
import requests

from .helpers import host_rss_peak, reset_rss_peak


def f(sbxd, op, sid, **body):
    return sbxd.post(f"/sandbox/files/{op}", {"sandbox_id": sid, **body})


def raw_url(sbxd, sid, path, kind="files"):
    return f"{sbxd.url}/v1/sandbox/{sid}/{kind}"


def test_json_round_trips(sbxd, sid):
    blob = os.urandom(1 << 20)
    r = f(sbxd, "write", sid, path="/data/bin", content=base64.b64encode(blob).decode(),
          encoding="base64", mode="0600")
    assert r.status_code == 200 and r.json()["size"] == len(blob)
    r = f(sbxd, "read", sid, path="/data/bin").json()
    assert r["encoding"] == "base64" and base64.b64decode(r["content"]) == blob
    assert r["mode"] == "0600" and r["type"] == "file"
    # empty
    assert f(sbxd, "write", sid, path="/data/empty", content="").status_code == 200
    r = f(sbxd, "read", sid, path="/data/empty").json()
    assert r["content"] == "" and r["size"] == 0
    # 9.9 MB of text in one JSON request
    text = ("0123456789abcdef" * 640000)[:9_900_000]
    assert f(sbxd, "write", sid, path="/data/text", content=text).status_code == 200
    r = f(sbxd, "read", sid, path="/data/text").json()
    assert r["encoding"] == "utf-8" and r["content"] == text
    # NUL bytes are data in utf-8 content too
    assert f(sbxd, "write", sid, path="/data/nul", content="a\u0000b").status_code == 200
    assert f(sbxd, "read", sid, path="/data/nul").json()["content"] == "a\u0000b"
    # append
    f(sbxd, "append", sid, path="/data/log", content="one\n")
    f(sbxd, "append", sid, path="/data/log", content="two\n")
    assert f(sbxd, "read", sid, path="/data/log").json()["content"] == "one\ntwo\n"
    # a replace keeps the old mode unless told; the file is replaced, not rewritten in place
    sbxd.exec(sid, "chmod 751 /data/log")
    f(sbxd, "write", sid, path="/data/log", content="new")
    assert f(sbxd, "stat", sid, path="/data/log").json()["mode"] == "0751"
    f(sbxd, "write", sid, path="/data/log", content="new", mode=0o640)
    assert f(sbxd, "stat", sid, path="/data/log").json()["mode"] == "0640"
    # read of a file over 10 MB points to the raw endpoint
    sbxd.exec(sid, "head -c 11000000 /dev/zero > /data/big")
    assert f(sbxd, "read", sid, path="/data/big").status_code == 413


def test_raw_round_trips_and_100mb_streamed(sbxd, sid):
    for size in (0, 12345, 9_900_000):
        blob = os.urandom(size)
        r = requests.put(raw_url(sbxd, sid, "") + f"?path=/raw/f{size}", data=blob, timeout=120)
        assert r.status_code == 200 and r.json()["size"] == size, r.text
        g = requests.get(raw_url(sbxd, sid, "") + f"?path=/raw/f{size}", timeout=120)
        assert g.status_code == 200 and g.content == blob
    # 100 MB each way, generated and checked on the fly: never held whole by anyone
    size = 100 * 1000 * 1000
    chunk = os.urandom(1 << 20)

    def gen():
        left = size
        while left:
            n = min(left, len(chunk))
            yield chunk[:n]
            left -= n
    want = hashlib.sha256()
    left = size
    while left:
        n = min(left, len(chunk))
        want.update(chunk[:n])
        left -= n
    reset_rss_peak(sbxd.proc.pid)
    before = host_rss_peak(sbxd.proc.pid)
    r = requests.put(raw_url(sbxd, sid, "") + "?path=/raw/big&mode=0640", data=gen(), timeout=300)
    assert r.status_code == 200 and r.json()["size"] == size, r.text
    inside = sbxd.exec(sid, "sha256sum /raw/big; stat -c %a /raw/big").json()["stdout"].split()
    assert inside[0] == want.hexdigest() and inside[2] == "640"
    g = requests.get(raw_url(sbxd, sid, "") + "?path=/raw/big", stream=True, timeout=300)
    got = hashlib.sha256()
    n = 0
    for part in g.iter_content(1 << 20):
        got.update(part)
        n += len(part)
    assert n == size and got.hexdigest() == want.hexdigest()
    grew = host_rss_peak(sbxd.proc.pid) - before
    assert grew < 64 * 1024, f"sbxd peak RSS grew by {grew} kB"


def test_upload_cut_short_leaves_nothing(sbxd, sid):
    import socket
    s = socket.create_connection(("127.0.0.1", sbxd.port))
    s.sendall(f"PUT /v1/sandbox/{sid}/files?path=/cut/file HTTP/1.1\r\nHost: x\r\n"
              f"Content-Length: 1000000\r\n\r\n".encode() + b"x" * 300000)
    s.close()
    import time
    time.sleep(1)
    assert f(sbxd, "stat", sid, path="/cut/file").status_code == 404
    left = f(sbxd, "list", sid, path="/cut").json()["entries"]
    assert left == [], left  # the temporary file is gone too


def test_operations(sbxd, sid):
    assert f(sbxd, "mkdir", sid, path="/w/a/b/c").status_code == 200
    assert f(sbxd, "mkdir", sid, path="/w/a/b/c").status_code == 200  # -p: exists is fine
    r = f(sbxd, "mkdir", sid, path="/w/x/y", parents=False)
    assert r.status_code == 404 and r.json()["error"]["code"] == "file_not_found"
    f(sbxd, "write", sid, path="/w/a/b/c/file", content="hi")
    f(sbxd, "write", sid, path="/w/a/top", content="t")
    one = f(sbxd, "list", sid, path="/w/a").json()["entries"]
    assert sorted(e["name"] for e in one) == ["b", "top"]
    deep = f(sbxd, "list", sid, path="/w/a", depth=5).json()["entries"]
    assert sorted(e["path"] for e in deep) == ["/w/a/b", "/w/a/b/c", "/w/a/b/c/file", "/w/a/top"]
    st = f(sbxd, "stat", sid, path="/w/a/b/c/file").json()
    assert st["type"] == "file" and st["size"] == 2
    assert f(sbxd, "rename", sid, path="/w/a/top", new_path="/w/moved").status_code == 200
    assert f(sbxd, "stat", sid, path="/w/a/top").status_code == 404
    assert f(sbxd, "read", sid, path="/w/moved").json()["content"] == "t"
    r = f(sbxd, "remove", sid, path="/w/a")
    assert r.status_code == 409 and r.json()["error"]["code"] == "directory_not_empty"
    assert f(sbxd, "remove", sid, path="/w/a", recursive=True).status_code == 200
    assert f(sbxd, "stat", sid, path="/w/a").status_code == 404
    assert f(sbxd, "read", sid, path="/w").status_code == 400  # a directory
    assert f(sbxd, "remove", sid, path="/nope").status_code == 404


def test_archive_round_trip(sbxd, sid):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in [("a.txt", b"alpha"), ("sub/b.bin", os.urandom(100000))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            t.addfile(info, io.BytesIO(data))
    r = requests.put(raw_url(sbxd, sid, "", "archive") + "?path=/arch/in", data=buf.getvalue(),
                     timeout=120)
    assert r.status_code == 200, r.text
    assert f(sbxd, "read", sid, path="/arch/in/a.txt").json()["content"] == "alpha"
    assert f(sbxd, "stat", sid, path="/arch/in/sub/b.bin").json()["mode"] == "0640"
    names = [e["name"] for e in f(sbxd, "list", sid, path="/arch/in").json()["entries"]]
    assert sorted(names) == ["a.txt", "sub"]  # the uploaded tar itself is gone
    g = requests.get(raw_url(sbxd, sid, "", "archive") + "?path=/arch/in", timeout=120)
    assert g.status_code == 200 and g.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(g.content)) as t:
        got = {m.name.lstrip("./"): t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    assert got["a.txt"] == b"alpha" and len(got["sub/b.bin"]) == 100000
    bad = requests.put(raw_url(sbxd, sid, "", "archive") + "?path=/arch/bad", data=b"not a tar" * 100)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "archive_failed"
    assert requests.get(raw_url(sbxd, sid, "", "archive") + "?path=/arch/in/a.txt").status_code == 400


def test_escapes_are_refused(sbxd, sid):
    marker = "sbx-escape-" + uuid.uuid4().hex[:12]
    r = sbxd.exec(sid, "ln -s / /tmp/rootlink && ln -s /proc/1/root /tmp/p1root && "
                       "ln -s /proc/self/cwd /tmp/cwdlink && "
                       "ln -s /etc/hostname /tmp/victim && ln -s /etc/hostname /tmp/victim2 && "
                       "cat /etc/hostname")
    assert r.json()["exit_code"] == 0, r.text
    hostname = r.json()["stdout"]
    magic = ["/proc/1/root/etc/hostname", "/proc/self/root/etc/hostname",
             "/proc/1/cwd/etc/hostname", f"/tmp/p1root/tmp/{marker}", f"/tmp/cwdlink/{marker}",
             "/proc/self/fd/0"]
    dotdot = [f"/tmp/../{marker}", f"/../../{marker}", "/tmp/./x", "tmp/relative", ""]
    for p in magic:
        for op, extra in [("read", {}), ("write", {"content": "x"}), ("append", {"content": "x"}),
                          ("list", {}), ("mkdir", {}), ("rename", {"new_path": "/tmp/r"})]:
            r = f(sbxd, op, sid, path=p, **extra)
            assert r.status_code in (400, 403, 404, 409), (op, p, r.text)
            assert r.status_code != 200
        assert requests.get(raw_url(sbxd, sid, "") + f"?path={p}").status_code != 200, p
        assert requests.put(raw_url(sbxd, sid, "") + f"?path={p}", data=b"x").status_code != 200, p
        assert requests.post(sbxd.url + "/v1/sandbox/files/watch",
                             json={"sandbox_id": sid, "path": p}).status_code != 200, p
    # magic links are refused as such (not merely missing)
    r = f(sbxd, "read", sid, path="/proc/1/root/etc/hostname")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = f(sbxd, "write", sid, path=f"/tmp/p1root/tmp/{marker}", content="x")
    assert r.status_code == 403
    for p in dotdot:
        for op, extra in [("read", {}), ("write", {"content": "x"}), ("append", {"content": "x"}),
                          ("list", {}), ("stat", {}), ("mkdir", {}), ("remove", {}),
                          ("rename", {"new_path": "/tmp/r"}), ("watch", {})]:
            r = f(sbxd, op, sid, path=p, **extra)
            assert r.status_code == 400, (op, p, r.text)
        r = f(sbxd, "rename", sid, path="/tmp/victim", new_path=p)
        assert r.status_code == 400
        for kind in ("files", "archive"):
            assert requests.get(raw_url(sbxd, sid, "", kind) + f"?path={p}").status_code == 400
            assert requests.put(raw_url(sbxd, sid, "", kind) + f"?path={p}",
                                data=b"x").status_code == 400
    # a symlink as the final component is replaced, never written through
    assert f(sbxd, "write", sid, path="/tmp/victim", content="replaced").status_code == 200
    assert f(sbxd, "stat", sid, path="/tmp/victim").json()["type"] == "file"
    assert sbxd.exec(sid, "cat /etc/hostname").json()["stdout"] == hostname
    r = f(sbxd, "append", sid, path="/tmp/victim2", content="x")
    assert r.status_code == 403
    assert sbxd.exec(sid, "cat /etc/hostname").json()["stdout"] == hostname
    # removing a link to / removes the link only
    assert f(sbxd, "remove", sid, path="/tmp/rootlink", recursive=True).status_code == 200
    assert sbxd.exec(sid, "test -x /bin/sh && echo ok").json()["stdout"] == "ok\n"
    # a link to / inside the sandbox resolves inside it: the host is never touched
    f(sbxd, "write", sid, path=f"/tmp/p1root/{marker}", content="x")
    sbxd.exec(sid, "ln -s / /tmp/rootlink2")
    r = f(sbxd, "write", sid, path=f"/tmp/rootlink2/tmp/{marker}", content="inside")
    assert r.status_code == 200
    assert f(sbxd, "read", sid, path=f"/tmp/{marker}").json()["content"] == "inside"
    for host_path in (f"/tmp/{marker}", f"/{marker}", f"/etc/{marker}"):
        assert not pathlib.Path(host_path).exists(), host_path
    # sbx-init's own /proc entries (it is PID 1) are off limits, whatever the spelling
    for p in ("/proc/self/environ", "/proc/1/environ", "/proc/1/maps", "/proc/thread-self/comm"):
        r = f(sbxd, "read", sid, path=p)
        assert r.status_code == 403, (p, r.text)
    assert f(sbxd, "append", sid, path="/proc/self/comm", content="x").status_code == 403
    assert f(sbxd, "write", sid, path="/proc/1/oom_score_adj", content="1000").status_code == 403
    assert f(sbxd, "list", sid, path="/proc/self/fd").status_code == 403
    assert requests.get(raw_url(sbxd, sid, "") + "?path=/proc/1/environ").status_code == 403
    assert f(sbxd, "read", sid, path="/proc/cpuinfo").status_code == 200  # the rest of /proc is fine
    # stat of a magic link names it, never what it points to
    st = f(sbxd, "stat", sid, path="/tmp/p1root").json()
    assert st["type"] == "symlink" and st["target"] == "/proc/1/root"


def test_files_validation(sbxd, sid):
    cases = [
        ("write", {"path": "/x", "content": 5}),
        ("write", {"path": "/x"}),
        ("write", {"path": "/x", "content": "@@", "encoding": "base64"}),
        ("write", {"path": "/x", "content": "a", "mode": "999"}),
        ("write", {"path": "/x", "content": "a", "mode": 70000}),
        ("write", {"path": 5, "content": "a"}),
        ("write", {"path": "/x\u0000y", "content": "a"}),
        ("write", {"path": "/" + "a" * 5000, "content": "a"}),
        ("list", {"path": "/", "depth": 0}),
        ("list", {"path": "/", "depth": "2"}),
        ("remove", {"path": "/x", "recursive": "yes"}),
        ("rename", {"path": "/x"}),
        ("read", {"path": "/x", "encoding": "utf-16"}),
    ]
    for op, body in cases:
        r = f(sbxd, op, sid, **body)
        assert r.status_code == 400, (op, body, r.text)
    r = f(sbxd, "read", "sb_00000000000000000000", path="/x")
    assert r.status_code == 404
    assert requests.get(f"{sbxd.url}/v1/sandbox/{sid}/files").status_code == 400
    assert requests.get(f"{sbxd.url}/v1/sandbox/nope/files?path=/x").status_code == 404
    assert requests.post(f"{sbxd.url}/v1/sandbox/{sid}/files?path=/x").status_code == 405
    assert requests.put(raw_url(sbxd, sid, "") + "?path=/x&mode=abc", data=b"").status_code == 400


def test_names_that_are_not_utf8(sbxd, sid):
    """A file name is any bytes, a JSON string is Unicode: a name that is not UTF-8 comes
    back with U+FFFD for each bad byte and the exact bytes in <field>_base64. Before, the
    field was dropped (a listing entry without path or name) and a raw upload to such a
    path wrote the file but answered 500."""
    r = requests.put(f"{raw_url(sbxd, sid, '')}?path=/data/u/a%FFb", data=b"hello", timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "/data/u/a\ufffdb", "size": 5,
                        "path_base64": base64.b64encode(b"/data/u/a\xffb").decode()}
    assert sbxd.exec(sid, "ln -s \"/data/u/$(printf '\\376')\" /data/u/lnk").status_code == 200
    entries = {e["name"]: e for e in f(sbxd, "list", sid, path="/data/u").json()["entries"]}
    assert set(entries) == {"a\ufffdb", "lnk"}, entries
    e = entries["a\ufffdb"]
    assert base64.b64decode(e["name_base64"]) == b"a\xffb"
    assert base64.b64decode(e["path_base64"]) == b"/data/u/a\xffb"
    assert e["type"] == "file" and e["size"] == 5
    link = entries["lnk"]
    assert link["target"] == "/data/u/\ufffd" and "name_base64" not in link
    assert base64.b64decode(link["target_base64"]) == b"/data/u/\xfe"
    # The exact bytes address the file again through the raw route.
    r = requests.get(f"{raw_url(sbxd, sid, '')}?path=/data/u/a%FFb", timeout=30)
    assert r.status_code == 200 and r.content == b"hello"
    # An error naming such a path: before, its message made no JSON and the answer was a
    # 500 'no reply'.
    for route in ("files", "archive"):
        r = requests.get(f"{sbxd.url}/v1/sandbox/{sid}/{route}?path=/data/u/none%FF", timeout=30)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "file_not_found", r.text
        assert "/data/u/none\ufffd" in r.json()["error"]["message"], r.text
