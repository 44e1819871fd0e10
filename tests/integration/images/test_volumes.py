"""Volumes against a real sbxd: shared by sandboxes, persistent after they end, bounded,
owned by root inside, and mounted only where it is safe."""
from .test_snapshots import sh


def test_volume_shared_and_persistent(isbxd):
    d = isbxd
    r = d.post("/volume/create", {"name": "shared", "size_mb": 64})
    assert r.status_code == 200, r.text
    assert d.post("/volume/create", {"name": "shared"}).status_code == 409
    a = d.create(volumes={"/data": "shared"})
    b = d.create(volumes={"/mnt/vol": "shared"})
    sh(d, a, "echo from-a > /data/a && mkdir /data/dir && echo nested > /data/dir/n")
    out = sh(d, b, "cat /mnt/vol/a /mnt/vol/dir/n; stat -c '%U:%G' /mnt/vol/a; echo from-b > /mnt/vol/b")
    assert out["stdout"] == "from-a\nnested\nroot:root\n"
    assert sh(d, a, "cat /data/b")["stdout"] == "from-b\n"
    # in use: not deletable
    r = d.post("/volume/delete", {"name": "shared"})
    assert r.status_code == 409, r.text
    for sid in (a, b):
        d.post("/sandbox/terminate", {"sandbox_id": sid})
    c = d.create(volumes={"/data": "shared"})
    assert sh(d, c, "cat /data/a /data/b /data/dir/n")["stdout"] == "from-a\nfrom-b\nnested\n"
    # the volume is not part of a snapshot of the sandbox
    img = d.post("/sandbox/snapshot", {"sandbox_id": c}).json()["image_id"]
    k = d.create(image=img)
    assert sh(d, k, "ls -A /data 2>/dev/null | wc -l")["stdout"] == "0\n"
    vols = {v["name"]: v for v in d.get("/volume/list").json()["volumes"]}
    assert vols["shared"]["size_mb"] == 64 and vols["shared"]["bytes_used"] > 0
    d.post("/sandbox/terminate", {"sandbox_id": c})
    r = d.post("/volume/delete", {"name": "shared"})
    assert r.status_code == 200, r.text
    assert "shared" not in {v["name"] for v in d.get("/volume/list").json()["volumes"]}


def test_forks_mount_the_same_volumes(isbxd):
    d = isbxd
    assert d.post("/volume/create", {"name": "forkvol", "size_mb": 64}).status_code == 200
    src = d.create(volumes={"/data": "forkvol", "/srv/b": "forkvol"})
    sh(d, src, "echo before > /data/x && echo layer > /root/y")
    r = d.post("/sandbox/fork", {"sandbox_id": src, "count": 2})
    assert r.status_code == 200, r.text
    forks = [s["sandbox_id"] for s in r.json()["sandboxes"]]
    for i, k in enumerate(forks):
        # the same volume at both mount points (shared, not copied), and the layer copied
        assert sh(d, k, "cat /data/x /srv/b/x /root/y")["stdout"] == "before\nbefore\nlayer\n"
        sh(d, k, f"echo fork{i} > /data/f{i}")
    assert sh(d, src, "cat /data/f0 /data/f1")["stdout"] == "fork0\nfork1\n"
    # the forks count as users of the volume too
    for sid in [src] + forks[:1]:
        d.post("/sandbox/terminate", {"sandbox_id": sid})
    assert d.post("/volume/delete", {"name": "forkvol"}).status_code == 409
    d.post("/sandbox/terminate", {"sandbox_id": forks[1]})
    assert d.post("/volume/delete", {"name": "forkvol"}).status_code == 200


def test_volume_quota(isbxd):
    d = isbxd
    assert d.post("/volume/create", {"name": "small", "size_mb": 16}).status_code == 200
    sid = d.create(volumes={"/q": "small"})
    j = sh(d, sid, "dd if=/dev/zero of=/q/fill bs=1M count=64", ok=False)
    assert j["exit_code"] != 0 and "No space left" in j["stderr"], j
    size = int(sh(d, sid, "stat -c %s /q/fill")["stdout"])
    assert size <= 16 << 20
    # the sandbox's own disk is not what filled up
    sh(d, sid, "echo fine > /root/ok")
    d.post("/sandbox/terminate", {"sandbox_id": sid})
    assert d.post("/volume/delete", {"name": "small"}).status_code == 200


def test_volume_mount_points_and_names_validated(isbxd):
    d = isbxd
    assert d.post("/volume/create", {"name": "v1", "size_mb": 16}).status_code == 200
    for target in ["data", "/", "/proc", "/proc/x", "/sys/fs", "/dev/x", "/tmp/x", "/a/../b",
                   "/a/./b", "/a//b", "/a/"]:
        r = d.post("/sandbox/create", {"volumes": {target: "v1"}})
        assert r.status_code == 400, (target, r.text)
    r = d.post("/sandbox/create", {"volumes": {"/data": "nope"}})
    assert r.status_code == 400 and "nope" in r.text
    for name in ["", "../x", "A", "a/b", "x" * 64]:
        assert d.post("/volume/create", {"name": name}).status_code == 400, name
    assert d.post("/volume/create", {"name": "big", "size_mb": 1}).status_code == 400
    # a symlink in the image at the mount point is not followed: /bin is one (merged /usr)
    r = d.post("/sandbox/create", {"volumes": {"/bin/x": "v1"}})
    assert r.status_code == 500 and "volume mount point" in r.text, r.text
    # the volume cannot be used to see the host: its root is the volume
    sid = d.create(volumes={"/v": "v1"})
    out = sh(d, sid, "ls -A /v; cat /proc/self/mountinfo | grep ' /v '")["stdout"]
    assert out.startswith("lost+found\n") and "nosuid,nodev" in out and "idmapped" in out
    sh(d, sid, "mknod /v/dev c 1 3", ok=False)
    d.post("/sandbox/terminate", {"sandbox_id": sid})
    assert d.post("/volume/delete", {"name": "v1"}).status_code == 200
