"""Images, layers and volumes across an sbxd restart: snapshots stay usable, volume data
stays (the volume is mounted again at its first use), a re-adopted sandbox says why it
cannot be snapshotted; a build or snapshot cut by kill -9 leaves no half-made image."""
import subprocess
import threading
import time

import requests

from api.conftest import Sbxd, finish, make_state_dir, wait_clean

from .conftest import cleanup_volumes


def sh(d, sid, cmd):
    r = d.exec(sid, ["/bin/sh", "-c", cmd])
    assert r.status_code == 200, r.text
    assert r.json()["exit_code"] == 0, r.json()
    return r.json()["stdout"]


def test_restart_keeps_images_and_volumes(python_image):
    d = Sbxd(make_state_dir()).start()
    try:
        assert d.post("/volume/create", {"name": "keep", "size_mb": 32}).status_code == 200
        a = d.create(volumes={"/data": "keep"})
        sh(d, a, "echo persisted > /data/p && echo layer > /root/l")
        img = d.post("/sandbox/snapshot", {"sandbox_id": a}).json()["image_id"]
        assert d.stop() == 0
        # the volume's host mount goes too (as after a reboot): it must come back by itself
        subprocess.run(["umount", "-l", str(d.state_dir / "volumes" / "keep")], check=True)
        d2 = Sbxd(d.state_dir).start()
        d2.created = d.created
        d = d2
        b = d.create(image=img, volumes={"/v": "keep"})
        assert sh(d, b, "cat /root/l /v/p") == "layer\npersisted\n"
        # a is running again (re-adopted), but its writable layer is out of reach now
        assert sh(d, a, "cat /data/p") == "persisted\n"
        r = d.post("/sandbox/snapshot", {"sandbox_id": a})
        assert r.status_code == 400 and "restart" in r.text, r.text
        listed = {i["image_id"] for i in d.get("/image/list").json()["images"]}
        assert img in listed
    finally:
        if d.proc.poll() is None:
            d.terminate_all()
            cleanup_volumes(d)
        finish(d)


def wait_for(cond, what, seconds=60, step=0.02):
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(step)


def test_build_cut_by_kill9_fails_instead_of_building_forever(python_image):
    """sbxd dies while a build runs: after the restart nothing builds the image any more,
    so it must say failed (and why), not "building" for ever; its build sandbox is gone."""
    d = Sbxd(make_state_dir(), ["--pool-size", "0"]).start()
    try:
        r = d.post("/image/build", {"base": "python:3.11", "run_commands": ["echo step; sleep 600"]})
        assert r.status_code == 202, r.text
        img = r.json()["image_id"]
        wait_for(lambda: "step\n" in (d.get(f"/image/{img}").json()["log"] or ""),
                 "the build's command did not start")
        builders = [p.name for p in (d.state_dir / "run").iterdir()]
        assert len(builders) == 1
        d.kill9()
        d.start()
        im = d.get(f"/image/{img}").json()
        assert im["status"] == "failed", im
        assert "interrupted" in im["error"] and "interrupted" in im["log"], im
        assert [i["status"] for i in d.get("/image/list").json()["images"]
                if i["image_id"] == img] == ["failed"]
        assert wait_clean(d.state_dir, builders) == []
        # an image of a failed build cannot be used, and asking for it is a 400
        assert d.post("/sandbox/create", {"image": img}).status_code == 400
    finally:
        finish(d)


def test_snapshot_cut_by_kill9_leaves_no_half_made_layer(python_image):
    """sbxd dies while a snapshot copies the writable layer: the next start removes the
    unfinished copy (before, it stayed on disk until someone called /image/gc), no image
    appears, and the sandbox (left thawed) is served again."""
    d = Sbxd(make_state_dir(), ["--pool-size", "0"]).start()
    try:
        sid = d.create(memory=2048)
        sh(d, sid, "for i in $(seq 20); do head -c 20000000 /dev/urandom > /root/f$i; done")
        layers = d.state_dir / "layers"

        def tmps():
            return [p for p in layers.iterdir() if p.name.startswith(".tmp-")] if layers.exists() else []

        def snapshot():
            try:
                d.post("/sandbox/snapshot", {"sandbox_id": sid})
            except requests.RequestException:
                pass  # cut by the kill

        t = threading.Thread(target=snapshot)
        t.start()
        wait_for(lambda: tmps() != [], "the snapshot did not start copying", step=0.005)
        d.kill9()
        t.join()
        assert tmps() != []  # the crash left the copy
        d.start()
        assert tmps() == []
        assert [i for i in d.get("/image/list").json()["images"] if i["kind"] == "snapshot"] == []
        assert sh(d, sid, "ls /root | wc -l") == "20\n"
    finally:
        finish(d)


def test_volume_left_unrecorded_is_set_aside_at_start(python_image):
    """sbxd dies between making a volume's filesystem (fallocated image, mkfs, loop mount)
    and recording it, as kill -9 during a /volume/create does (seen with mkfs stopped):
    before, the image kept its whole size on disk and the name was lost for good (create:
    500 "File exists", list: absent, delete: 404). The next start moves it aside, data
    kept (a database restored from an older copy leaves the same state, with data in it),
    and the name is free again."""
    d = Sbxd(make_state_dir(), ["--pool-size", "0"]).start()
    try:
        assert d.post("/volume/create", {"name": "cut", "size_mb": 64}).status_code == 200
        sid = d.create(volumes={"/data": "cut"})
        assert sh(d, sid, "echo precious > /data/f && sync && echo ok") == "ok\n"
        assert d.post("/sandbox/terminate", {"sandbox_id": sid}).status_code == 200
        vols = d.state_dir / "volumes"
        d.kill9()
        # the state such a crash leaves: everything but the row
        subprocess.run(["sqlite3", str(d.state_dir / "sbx.db"),
                        "DELETE FROM sandbox_volumes WHERE volume = 'cut';"
                        "DELETE FROM volumes WHERE name = 'cut'"], check=True)
        assert (vols / "cut.img").exists()
        d.start()
        assert not (vols / "cut.img").exists() and not (vols / "cut").exists()
        assert str(vols / "cut") not in open("/proc/self/mountinfo").read()
        aside = list((vols / ".unrecorded").glob("cut-*.img"))
        assert len(aside) == 1 and aside[0].stat().st_size == 64 << 20, aside
        assert "its image is kept as" in d.log()
        out = subprocess.run(["debugfs", "-R", "cat /f", str(aside[0])], capture_output=True,
                             text=True, check=True).stdout
        assert out == "precious\n", out
        r = d.post("/volume/create", {"name": "cut", "size_mb": 64})
        assert r.status_code == 200, r.text
        assert [v["name"] for v in d.get("/volume/list").json()["volumes"]] == ["cut"]
        # The same name set aside again never replaces an earlier image: every name it
        # could take in the next minute is already there.
        d.kill9()
        subprocess.run(["sqlite3", str(d.state_dir / "sbx.db"),
                        "DELETE FROM volumes WHERE name = 'cut'"], check=True)
        now = int(time.time())
        taken = [vols / ".unrecorded" / f"cut-{t}.img" for t in range(now, now + 60)]
        for p in taken:
            p.write_text("earlier")
        d.start()
        assert all(p.read_text() == "earlier" for p in taken)
        again = [p for p in (vols / ".unrecorded").glob("cut-*-1.img")]
        assert len(again) == 1 and again[0].stat().st_size == 64 << 20, again
    finally:
        if d.proc.poll() is None:
            cleanup_volumes(d)
        finish(d)
