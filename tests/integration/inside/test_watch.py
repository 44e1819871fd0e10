"""Watch: created / modified / deleted events under a directory, recursive, as a stream."""
import json
import queue
import threading
import time

import requests

from .helpers import events


def start_watch(sbxd, sid, path, **body):
    r = requests.post(sbxd.url + "/v1/sandbox/files/watch",
                      json={"sandbox_id": sid, "path": path, **body}, stream=True, timeout=60)
    assert r.status_code == 200, r.text
    q = queue.Queue()

    def reader():
        try:
            for ev in events(r):
                q.put(ev)
        except Exception:  # closed by the test
            pass
    threading.Thread(target=reader, daemon=True).start()
    return r, q


def wait_for(q, pred, seconds=20):
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ev = q.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(ev)
        if pred(ev):
            return seen
    raise AssertionError(f"event not seen; got {seen}")


def test_watch_create_modify_delete_recursive(sbxd, sid):
    sbxd.post("/sandbox/files/mkdir", {"sandbox_id": sid, "path": "/watched/old"})
    r, q = start_watch(sbxd, sid, "/watched")
    sbxd.post("/sandbox/files/write", {"sandbox_id": sid, "path": "/watched/f", "content": "1"})
    wait_for(q, lambda e: e["type"] in ("created", "moved_to") and e["path"] == "/watched/f")
    sbxd.exec(sid, "echo more >> /watched/f")
    wait_for(q, lambda e: e["type"] == "modified" and e["path"] == "/watched/f")
    sbxd.exec(sid, "rm /watched/f")
    wait_for(q, lambda e: e["type"] == "deleted" and e["path"] == "/watched/f")
    # recursive: a directory that existed, and one created now with a file made at once
    sbxd.exec(sid, "echo x > /watched/old/g")
    wait_for(q, lambda e: e["type"] == "created" and e["path"] == "/watched/old/g")
    sbxd.exec(sid, "mkdir -p /watched/new/deeper && echo y > /watched/new/deeper/h")
    wait_for(q, lambda e: e["path"] == "/watched/new/deeper/h")
    sbxd.exec(sid, "echo z >> /watched/new/deeper/h")
    wait_for(q, lambda e: e["type"] == "modified" and e["path"] == "/watched/new/deeper/h")
    # (not closed here: a close races the reader thread; terminate ends the stream)


def test_watch_not_recursive_and_errors(sbxd, sid):
    sbxd.post("/sandbox/files/mkdir", {"sandbox_id": sid, "path": "/w2/sub"})
    r, q = start_watch(sbxd, sid, "/w2", recursive=False)
    sbxd.exec(sid, "echo a > /w2/sub/inner; echo b > /w2/top")
    seen = wait_for(q, lambda e: e.get("path") == "/w2/top")
    assert not any(e.get("path") == "/w2/sub/inner" for e in seen)
    # (not closed here: a close races the reader thread; terminate ends the stream)
    bad = sbxd.post("/sandbox/files/watch", {"sandbox_id": sid, "path": "/nonexistent"})
    assert bad.status_code == 404
    bad = sbxd.post("/sandbox/files/watch", {"sandbox_id": sid, "path": "/w2/top"})
    assert bad.status_code == 400
