"""Images, layers and volumes across an sbxd restart: snapshots stay usable, volume data
stays (the volume is mounted again at its first use), a re-adopted sandbox says why it
cannot be snapshotted."""
import subprocess

from api.conftest import Sbxd, finish, make_state_dir

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
