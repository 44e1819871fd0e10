"""What a sandbox (root inside) or an API caller plants, read by the host: sparse files that
would make a snapshot copy terabytes, names arranged to confuse the diff, device nodes,
forged overlay and capability xattrs, setuid files, and hostile tar uploads."""
import io
import os
import pathlib
import shutil
import stat
import tarfile
import time
import uuid
import zlib

import requests

from .test_snapshots import diff, sh, snapshot


def layer_dir(d, img):
    return pathlib.Path(d.state_dir) / "layers" / d.get(f"/image/{img}").json()["layers"][-1]


def test_sparse_files_cost_their_data_not_their_size(isbxd):
    """A file of 8 GiB that takes no space in the sandbox (a hole and 4 bytes) used to be
    copied as 8 GiB of zeros onto the host's disk by a snapshot (a terabyte fills it)."""
    d = isbxd
    sid = d.create()
    sh(d, sid, "truncate -s 8G /root/big"
               " && printf tail | dd of=/root/big bs=1 seek=$((4<<30)) conv=notrunc status=none"
               " && dd if=/dev/zero of=/root/zeros bs=64k count=16 status=none"
               " && head -c 100000 /dev/urandom > /root/rand")
    img = snapshot(d, sid)
    info = d.get(f"/image/{img}").json()
    assert info["bytes"] < 64 << 20, info
    lay = layer_dir(d, img)
    st = os.stat(lay / "root" / "big")
    assert st.st_size == 8 << 30 and st.st_blocks * 512 < 1 << 20, st
    k = d.create(image=img)
    out = sh(d, k, "stat -c %s /root/big /root/zeros /root/rand"
                   " && python3 -c \"f=open('/root/big','rb'); f.seek(4<<30); print(f.read(4).decode());"
                   " f.seek(1<<30); print(f.read(8) == bytes(8))\""
                   " && cmp -n 1048576 /root/zeros /dev/zero && echo zeros-ok")["stdout"]
    assert out == f"{8 << 30}\n1048576\n100000\ntail\nTrue\nzeros-ok\n", out
    # the same bytes, in both views: no change; the same layer again for the same content
    assert diff(d, k, since=img) == ([], [], [])
    assert sh(d, sid, "cmp /root/rand /root/rand && echo same")["stdout"] == "same\n"
    sh(d, k, "printf X | dd of=/root/big bs=1 seek=$((6<<30)) conv=notrunc status=none")
    assert diff(d, k, since=img) == ([], ["/root/big"], [])
    img2 = snapshot(d, k)
    assert d.get(f"/image/{img2}").json()["bytes"] < 128 << 20
    for s in (sid, k):
        d.post("/sandbox/terminate", {"sandbox_id": s})


def test_diff_reports_a_created_directory_once_whatever_sorts_between(isbxd):
    """"zz-1" and "zz.d" sort between "zz" and "zz/..." (- and . come before /): the entries
    below a created or deleted directory are still left out, and 3,000 siblings are listed."""
    d = isbxd
    sid = d.create()
    sh(d, sid, "mkdir -p /etc/zz/sub /etc/zz.d/q && touch /etc/zz/sub/f /etc/zz/a /etc/zz-1"
               " /etc/zz.d/q/f && rm -rf /usr/share/doc"
               " && mkdir /opt/many && cd /opt/many && for i in $(seq 1000 3999); do : > f$i; done")
    created, modified, deleted = diff(d, sid)
    many = [f"/opt/many/f{i}" for i in range(1000, 4000)]
    assert created == ["/etc/zz", "/etc/zz-1", "/etc/zz.d", "/opt/many"], created[:10]
    assert deleted == ["/usr/share/doc"], deleted[:10]
    img = snapshot(d, sid)
    k = d.create(image=img)
    sh(d, k, "rm /opt/many/f2000 && touch /opt/many/f2000x")
    created, modified, deleted = diff(d, k, since=img)
    assert (created, deleted) == (["/opt/many/f2000x"], ["/opt/many/f2000"])
    sh(d, k, "rm -rf /opt/many")
    created, modified, deleted = diff(d, k, since=img)
    assert (created, deleted) == ([], ["/opt/many"]) and len(many) == 3000
    for s in (sid, k):
        d.post("/sandbox/terminate", {"sandbox_id": s})


def test_devices_forged_xattrs_and_setuid_give_no_power(isbxd):
    """Root inside cannot make device nodes (not even a whiteout), trusted.* or
    security.capability xattrs; a user.overlay.* xattr it sets is kept escaped (overlay
    stores it as user.overlay.overlay.*), so it never makes a directory of a snapshot
    opaque; a setuid-root file stays a setuid file in the layer (owned by 0, in a 0700
    root-only directory on the host) but every mount of it is nosuid."""
    d = isbxd
    sid = d.create()
    setx = "python3 -c \"import os,sys; os.setxattr(sys.argv[1], sys.argv[2], sys.argv[3].encode())\""
    out = sh(d, sid, "cp /usr/bin/id /root/suid-id && chmod 4755 /root/suid-id"
                     " && mkdir /root/o && touch /root/o/f; r=;"
                     " for n in 'c 0 0' 'c 1 3' 'b 7 0' 'c 10 237'; do mknod /root/dev$r $n 2>/dev/null && r=${r}x; done;"
                     f" {setx} /root/o trusted.overlay.opaque y 2>/dev/null && echo trusted;"
                     f" {setx} /root/suid-id security.capability xxxxxxxxxxxxxxxxxxxx 2>/dev/null && echo cap;"
                     f" {setx} /usr/share user.overlay.opaque y; {setx} /root/o user.overlay.redirect /etc;"
                     " ls /root | grep -c dev; true", ok=False)["stdout"]
    assert out == "0\n", out
    # root inside has no capability to become anyone else, and the overlay is nosuid
    nosuid = "awk '$5 == \"/\" {print $6}' /proc/self/mountinfo | tr , '\\n' | grep -x nosuid"
    assert sh(d, sid, nosuid)["stdout"] == "nosuid\n"
    img = snapshot(d, sid)
    lay = layer_dir(d, img)
    st = os.stat(lay.parent)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == 0
    f = os.stat(lay / "root" / "suid-id", follow_symlinks=False)
    assert f.st_uid == 0 and f.st_mode & stat.S_ISUID
    assert "security.capability" not in os.listxattr(lay / "root" / "suid-id", follow_symlinks=False)
    for p in ("usr/share", "root/o"):
        names = os.listxattr(lay / p, follow_symlinks=False)
        assert "user.overlay.opaque" not in names and "user.overlay.redirect" not in names, names
        assert not any(n.startswith("trusted.") for n in names), names
    for dirpath, dirs, files in os.walk(lay):
        for n in dirs + files:
            m = os.lstat(os.path.join(dirpath, n)).st_mode
            assert not stat.S_ISBLK(m) and not (stat.S_ISCHR(m)), os.path.join(dirpath, n)
    k = d.create(image=img)
    assert sh(d, k, nosuid)["stdout"] == "nosuid\n"
    assert sh(d, k, "stat -c %a /root/suid-id")["stdout"] == "4755\n"
    out = sh(d, k, "ls /usr/share/doc | wc -l; ls /root/o; getfattr -n user.overlay.opaque"
                   " --only-values /usr/share 2>/dev/null; echo")["stdout"]
    lines = out.split("\n")
    assert int(lines[0]) > 10 and lines[1] == "f", out  # the base still shows through
    for s in (sid, k):
        d.post("/sandbox/terminate", {"sandbox_id": s})


def tar_of(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kw in entries:
            i = tarfile.TarInfo(name)
            data = kw.pop("data", b"x")
            for k, v in kw.items():
                setattr(i, k, v)
            if i.type == tarfile.REGTYPE:
                i.size = len(data)
                t.addfile(i, io.BytesIO(data))
            else:
                t.addfile(i)
    return buf.getvalue()


def test_hostile_archives_stay_under_their_path(isbxd):
    """Members with .., absolute names, a symlink followed by a member through it, hard
    links to /etc/shadow, device nodes: tar runs inside the sandbox, refuses or confines
    each, and nothing lands outside the target directory (in the sandbox or on the host)."""
    d = isbxd
    sid = d.create()
    marker = "sbx-tar-" + os.urandom(6).hex()
    body = tar_of([
        (f"../{marker}", {}), (f"../../../../{marker}", {}), (f"/{marker}-abs", {}),
        ("link", {"type": tarfile.SYMTYPE, "linkname": "/etc"}),
        (f"link/{marker}", {}),
        ("hl", {"type": tarfile.LNKTYPE, "linkname": "/etc/shadow"}),
        ("hl2", {"type": tarfile.LNKTYPE, "linkname": "../../etc/passwd"}),
        ("dev", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}),
        ("suid", {"mode": 0o4755, "uid": 0}),
        ("d" * 200 + "/" + "e" * 200, {}),
        ("ok", {"data": b"fine"}),
    ])
    r = requests.put(d.url + f"/v1/sandbox/{sid}/archive?path=/arch/t", data=body, timeout=120)
    assert r.status_code == 400 and r.json()["error"]["code"] == "archive_failed", r.text
    out = sh(d, sid, f"find / -xdev -name '{marker}*' 2>/dev/null | sort;"
                     " stat -c '%F' /arch/t/hl /arch/t/hl2 /arch/t/dev 2>&1 | grep -c 'No such';"
                     " cat /arch/t/ok; readlink /arch/t/link", ok=False)["stdout"]
    assert out == f"/arch/t/{marker}-abs\n3\nfine/etc\n", out
    for p in (f"/{marker}", f"/etc/{marker}", f"/{marker}-abs", f"/tmp/{marker}"):
        assert not os.path.exists(p), p
    d.post("/sandbox/terminate", {"sandbox_id": sid})


def test_gzip_bomb_is_bounded_by_the_sandboxs_disk(isbxd):
    """A 1.3 MB gzip that inflates to 1.25 GiB (the sandbox has 1 GiB of disk and of
    memory, and its disk is tmpfs pages charged to its memory): tar inside fails (out of
    space or killed by the sandbox's memory bound), the upload is 400 archive_failed, and
    the sandbox and sbxd go on."""
    d = isbxd
    sid = d.create()
    size = 1280 << 20
    hdr = tarfile.TarInfo("zeros")
    hdr.size = size
    raw = hdr.tobuf(format=tarfile.GNU_FORMAT)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [c.compress(raw)]
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        parts.append(c.compress(chunk))
    parts.append(c.compress(bytes(1024)))
    parts.append(c.flush())
    bomb = b"".join(parts)
    assert len(bomb) < 4 << 20
    r = requests.put(d.url + f"/v1/sandbox/{sid}/archive?path=/bomb", data=bomb, timeout=300)
    assert r.status_code == 400 and r.json()["error"]["code"] == "archive_failed", r.text
    sh(d, sid, "rm -rf /bomb && echo ok > /root/after && cat /root/after")
    assert d.get("/health").status_code == 200
    d.post("/sandbox/terminate", {"sandbox_id": sid})


def test_volume_space_is_reserved_on_the_host(isbxd):
    """A volume's whole size is taken from the host's disk when it is made: a sparse image
    let volumes promise more than the disk has, and a sandbox filling its own volume filled
    the host. A volume larger than the free space is refused without touching the disk."""
    d = isbxd
    assert d.post("/volume/create", {"name": "reserved", "size_mb": 64}).status_code == 200
    vols = pathlib.Path(d.state_dir) / "volumes"
    st = os.stat(vols / "reserved.img")
    assert st.st_size == 64 << 20 and st.st_blocks * 512 >= 64 << 20, st
    free_mb = shutil.disk_usage(d.state_dir).free >> 20
    r = d.post("/volume/create", {"name": "toobig", "size_mb": free_mb + 1024})
    assert r.status_code == 400, r.text
    if free_mb + 1024 <= 1 << 20:  # else the size bound refuses it first
        assert "free for volumes" in r.json()["error"]["message"], r.text
    assert not (vols / "toobig.img").exists()
    assert d.get("/volume/toobig").status_code == 404
    assert shutil.disk_usage(d.state_dir).free >> 20 > free_mb - 512
    assert d.post("/volume/delete", {"name": "reserved"}).status_code == 200


def test_entries_swapped_for_host_symlinks_during_snapshots(isbxd):
    """While snapshots copy its upper layer, the sandbox keeps swapping a file and a
    directory for symlinks to /etc/shadow and /etc (rename over, so the name always
    exists): every layer holds either the sandbox's own file or directory or the symlink,
    never anything read through it on the host."""
    d = isbxd
    sid = d.create()
    swap = ("import os, shutil\n"
            "os.chdir('/root/w')\n"
            "while True:\n"
            "    os.symlink('/etc/shadow', 'f1'); os.rename('f1', 'sw')\n"
            "    open('f2', 'w').write('mine\\n'); os.rename('f2', 'sw')\n"
            "    os.symlink('/etc', 'swd1'); os.rename('swd1', 'swd')\n"
            "    shutil.rmtree('swd2', ignore_errors=True); os.mkdir('swd2')\n"
            "    open('swd2/x', 'w').write('mine\\n'); os.unlink('swd'); os.rename('swd2', 'swd')\n")
    r = d.post("/sandbox/files/write", {"sandbox_id": sid, "path": "/root/swap.py", "content": swap})
    assert r.status_code == 200, r.text
    sh(d, sid, "mkdir /root/w && (nohup python3 /root/swap.py >/dev/null 2>&1 &)"
               " && until [ -L /root/w/sw ] || [ -f /root/w/sw ]; do sleep 0.01; done")
    host_shadow = pathlib.Path("/etc/shadow").read_bytes()
    seen = set()
    for _ in range(6):
        img = snapshot(d, sid)
        lay = layer_dir(d, img) / "root" / "w"
        for name in ("sw", "swd"):
            p = lay / name
            if not os.path.lexists(p):
                seen.add((name, "absent"))
                continue
            m = os.lstat(p).st_mode
            if stat.S_ISLNK(m):
                assert os.readlink(p) in ("/etc/shadow", "/etc"), os.readlink(p)
                seen.add((name, "link"))
            elif name == "sw":
                assert stat.S_ISREG(m) and p.read_bytes() == b"mine\n"
                seen.add((name, "file"))
            else:
                assert stat.S_ISDIR(m) and os.listdir(p) in ([], ["x"]), os.listdir(p)
                seen.add((name, "dir"))
        for dirpath, dirs, files in os.walk(layer_dir(d, img)):
            for n in files:
                fp = os.path.join(dirpath, n)
                if stat.S_ISREG(os.lstat(fp).st_mode):
                    assert open(fp, "rb").read(len(host_shadow) + 1) != host_shadow, fp
        assert not os.path.lexists(lay / "swd" / "shadow") or os.path.islink(lay / "swd")
    d.post("/sandbox/terminate", {"sandbox_id": sid})
    assert ("sw", "absent") not in seen, seen  # renamed over: it always exists


def test_a_build_with_its_kept_capabilities_makes_no_power_for_others(isbxd):
    """A build step keeps CAP_CHOWN, DAC_OVERRIDE, FOWNER, FSETID, SETUID, SETGID... in its
    own user namespace: it can make setuid-root files, but no device nodes, no file
    capabilities, no trusted.* xattrs, no mounts, no network; it sees no host file; what
    it makes is data in a layer that every sandbox mounts nosuid."""
    marker = uuid.uuid4().hex
    setx = "python3 -c \"import os,sys; os.setxattr(sys.argv[1], sys.argv[2], sys.argv[3].encode())\""
    probe = ("p() { if sh -c \"$2\" >/dev/null 2>&1; then echo \"$1 yes\"; else echo \"$1 no\"; fi; } ;"
             f" : {marker};"
             " p chown 'touch /b/o && chown 4242:4242 /b/o' ;"
             " p setuid 'cp /usr/bin/id /b/suid && chmod 4755 /b/suid && test -u /b/suid' ;"
             " p mknod 'mknod /b/null c 1 3' ;"
             " p whiteout 'mknod /b/wh c 0 0' ;"
             f" p fcap '{setx} /b/suid security.capability xxxxxxxxxxxxxxxxxxxx' ;"
             f" p trusted '{setx} /b trusted.overlay.opaque y' ;"
             " p mount 'mount -t tmpfs t /mnt' ;"
             " p net 'python3 -c \"import socket; socket.create_connection((\\\"1.1.1.1\\\", 53), 2)\"' ;"
             " p hostfs 'test -e /run/sbx || grep -q sbxd /proc/1/cmdline' ;"
             " p chown_out 'chown 70000 /b/o'")
    spec = {"base": "python:3.11", "run_commands": ["mkdir /b", "{ " + probe + " ; } > /b/probe"]}
    r = isbxd.post("/image/build", spec)
    assert r.status_code in (200, 202), r.text
    img = r.json()["image_id"]
    deadline = time.monotonic() + 600
    while (j := isbxd.get(f"/image/{img}").json())["status"] == "building":
        assert time.monotonic() < deadline, j
        time.sleep(0.2)
    assert j["status"] == "ready", j
    sid = isbxd.create(image=img)
    got = dict(l.split() for l in sh(isbxd, sid, "cat /b/probe")["stdout"].splitlines())
    assert got == {"chown": "yes", "setuid": "yes", "mknod": "no", "whiteout": "no", "fcap": "no",
                   "trusted": "no", "mount": "no", "net": "no", "hostfs": "no",
                   "chown_out": "no"}, got
    assert sh(isbxd, sid, "stat -c '%u %a' /b/o /b/suid")["stdout"] == "4242 644\n0 4755\n"
    lay = layer_dir(isbxd, img)
    assert "security.capability" not in os.listxattr(lay / "b" / "suid", follow_symlinks=False)
    nosuid = "awk '$5 == \"/\" {print $6}' /proc/self/mountinfo | tr , '\\n' | grep -x nosuid"
    assert sh(isbxd, sid, nosuid)["stdout"] == "nosuid\n"
    isbxd.post("/sandbox/terminate", {"sandbox_id": sid})
    isbxd.post("/image/delete", {"image_id": img})
