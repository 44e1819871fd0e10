"""Snapshots, forks and diffs against a real sbxd: files as they were, shared layers,
private changes, snapshots of snapshots past the flattening bound, exact diffs."""
import concurrent.futures

import requests


def sh(d, sid, cmd, ok=True):
    r = d.exec(sid, ["/bin/sh", "-c", cmd])
    assert r.status_code == 200, r.text
    j = r.json()
    if ok:
        assert j["exit_code"] == 0, j
    return j


def snapshot(d, sid):
    r = d.post("/sandbox/snapshot", {"sandbox_id": sid})
    assert r.status_code == 200, r.text
    return r.json()["image_id"]


def diff(d, sid, since=None):
    body = {"sandbox_id": sid}
    if since:
        body["since"] = since
    r = d.post("/sandbox/diff", body)
    assert r.status_code == 200, r.text
    j = r.json()
    return j["created"], j["modified"], j["deleted"]


def test_snapshot_then_ten_sandboxes_private_changes(isbxd):
    d = isbxd
    src = d.create()
    sh(d, src, "mkdir -p /work/sub && echo hello > /work/a.txt && seq 1 1000 > /work/sub/n"
               " && rm /etc/hostname && echo extra >> /etc/hosts && ln -s a.txt /work/link"
               " && chmod 600 /work/a.txt && ln /work/a.txt /work/hard")
    img = snapshot(d, src)
    assert img.startswith("img_")
    # the same content again: the same image (content-derived ids)
    assert snapshot(d, src) == img

    def make(i):
        return d.create(image=img)

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        kids = list(ex.map(make, range(10)))
    for i, k in enumerate(kids):
        out = sh(d, k, "cat /work/a.txt; wc -l < /work/sub/n; readlink /work/link;"
                       " stat -c '%a %U' /work/a.txt; stat -c %i /work/a.txt /work/hard | uniq | wc -l;"
                       " test -e /etc/hostname && echo hostname-back; tail -1 /etc/hosts")["stdout"]
        assert out.split("\n")[:7] == ["hello", "1000", "a.txt", "600 root", "1", "extra", ""], out
        sh(d, k, f"echo {i} > /work/mine && echo {i} >> /work/a.txt && rm /work/sub/n")
    for i, k in enumerate(kids):
        out = sh(d, k, "cat /work/mine; cat /work/a.txt; ls /work/sub")["stdout"]
        assert out == f"{i}\nhello\n{i}\n", out
    # the original is untouched by its children
    out = sh(d, src, "cat /work/a.txt; test -e /work/mine || echo none; wc -l < /work/sub/n")["stdout"]
    assert out == "hello\nnone\n1000\n"


def test_fork(isbxd):
    d = isbxd
    src = d.create()
    sh(d, src, "echo forked > /root/f")
    r = d.post("/sandbox/fork", {"sandbox_id": src, "count": 3})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["image_id"].startswith("img_") and len(j["sandboxes"]) == 3
    ids = [s["sandbox_id"] for s in j["sandboxes"]]
    assert len(set(ids)) == 3 and src not in ids
    for k in ids:
        assert j["sandboxes"][0]["image"] == j["image_id"]
        assert sh(d, k, "cat /root/f")["stdout"] == "forked\n"
    bad = d.post("/sandbox/fork", {"sandbox_id": src, "count": 0})
    assert bad.status_code == 400
    gone = d.post("/sandbox/fork", {"sandbox_id": "sb_00000000000000000000", "count": 1})
    assert gone.status_code == 404


def test_snapshot_of_snapshot_deep_flattens(isbxd):
    d = isbxd
    sid = d.create()
    sh(d, sid, "mkdir /chain && echo 0 > /chain/0 && echo keep > /chain/keep")
    img = None
    depth = 12  # past the bound of 8 delta layers: the chain is flattened on the way
    for i in range(1, depth + 1):
        img = snapshot(d, sid)
        info = d.get(f"/image/{img}").json()
        assert 1 <= len(info["layers"]) <= 8, info
        nxt = d.create(image=img)
        d.post("/sandbox/terminate", {"sandbox_id": sid})
        sid = nxt
        # each level adds a file, removes the previous one, and replaces a directory
        sh(d, sid, f"echo {i} > /chain/{i} && rm /chain/{i - 1} && rm -rf /chain/dir"
                   f" && mkdir /chain/dir && touch /chain/dir/only{i}")
    out = sh(d, sid, "ls /chain; ls /chain/dir; cat /chain/keep")["stdout"]
    assert out == f"{depth}\ndir\nkeep\nonly{depth}\nkeep\n", out
    final = snapshot(d, sid)
    again = d.create(image=final)
    assert sh(d, again, "ls /chain /chain/dir")["stdout"] == \
        f"/chain:\n{depth}\ndir\nkeep\n\n/chain/dir:\nonly{depth}\n"


def test_diff_lists_exactly_the_changes(isbxd):
    d = isbxd
    sid = d.create()
    assert diff(d, sid) == ([], [], [])
    sh(d, sid, "echo new > /root/new.txt && mkdir -p /opt/app/lib && echo x > /opt/app/lib/m"
               " && echo more >> /etc/hosts && rm /etc/hostname && rm -rf /usr/share/base-files"
               " && chmod 700 /srv && cat /etc/passwd > /tmp/not-in-diff")
    # a file rewritten with the same bytes is not a change; touch alone is not either
    sh(d, sid, "cp /etc/debian_version /root/x && cat /root/x > /etc/debian_version && rm /root/x"
               " && touch /etc/issue")
    created, modified, deleted = diff(d, sid)
    assert created == ["/opt/app", "/root/new.txt"], created
    assert modified == ["/etc/hosts", "/srv"], modified
    assert deleted == ["/etc/hostname", "/usr/share/base-files"], deleted
    # since a snapshot: only what came after it
    img = snapshot(d, sid)
    sh(d, sid, "rm /root/new.txt && echo b > /opt/app/b && echo changed > /opt/app/lib/m")
    assert diff(d, sid, since=img) == (["/opt/app/b"], ["/opt/app/lib/m"], ["/root/new.txt"])
    # and a sandbox made from the snapshot diffs against it, or against the base
    kid = d.create(image=img)
    assert diff(d, kid) == ([], [], [])
    c, m, dl = diff(d, kid, since="python:3.11")
    assert c == ["/opt/app", "/root/new.txt"] and dl == ["/etc/hostname", "/usr/share/base-files"]
    bad = d.post("/sandbox/diff", {"sandbox_id": sid, "since": "img_" + "0" * 32})
    assert bad.status_code == 400, bad.text


def test_snapshot_is_consistent_under_writes(isbxd):
    """A writer appends 4096-byte records with one write(2) each; every snapshot holds a
    whole number of records, each intact. The writer is throttled (~16 MB/s) and the
    check streams the file: unthrottled, the log could reach the sandbox's 1 GiB and the
    check, reading it whole, ran out of memory (exit 137) on a fast run."""
    d = isbxd
    sid = d.create()
    sh(d, sid, "cat > /root/w.py <<'E'\nimport os, time\nfd = os.open('/root/log', os.O_WRONLY | os.O_CREAT | os.O_APPEND)\n"
               "i = 0\nwhile True:\n    os.write(fd, (b'%08d' % i) * 512)\n    i += 1\n"
               "    if i % 4 == 0:\n        time.sleep(0.001)\nE\n"
               "setsid python3 /root/w.py </dev/null >/dev/null 2>&1 &\n"
               "while ! test -s /root/log; do sleep 0.01; done")
    sizes = []
    for _ in range(5):
        img = snapshot(d, sid)
        k = d.create(image=img)
        out = sh(d, k, "python3 -c \"f=open('/root/log','rb')\nj=0\n"
                       "while True:\n    r=f.read(4096)\n    if not r: break\n"
                       "    assert r==(b'%08d'%j)*512, (j, len(r))\n    j+=1\n"
                       "print(j)\"")["stdout"]
        sizes.append(int(out))
        d.post("/sandbox/terminate", {"sandbox_id": k})
    assert sizes == sorted(sizes) and sizes[-1] > 0, sizes


def test_delete_image_in_use_is_refused(isbxd):
    d = isbxd
    src = d.create()
    sh(d, src, "dd if=/dev/urandom of=/root/blob bs=1M count=3 2>/dev/null")
    img = snapshot(d, src)
    user = d.create(image=img)
    r = d.post("/image/delete", {"image_id": img})
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "image_in_use"
    listed = {i["image_id"]: i for i in d.get("/image/list").json()["images"]}
    assert listed[img]["bytes"] >= 3 << 20
    d.post("/sandbox/terminate", {"sandbox_id": user})
    r = d.post("/image/delete", {"image_id": img})
    assert r.status_code == 200, r.text
    assert r.json()["layers_removed"] >= 1 and r.json()["bytes_freed"] >= 3 << 20
    assert d.get(f"/image/{img}").status_code == 404
    assert d.post("/image/delete", {"image_id": img}).status_code == 404
    r = d.post("/sandbox/create", {"image": img})
    assert r.status_code == 400, r.text
    assert d.post("/image/delete", {"image_id": "python:3.11"}).status_code == 400


def test_special_files_and_symlinks_are_data(isbxd):
    """A FIFO, a socket, and symlinks pointing at host paths are copied as what they are
    (nothing is opened or followed on the host), and the snapshot does not hang on them."""
    d = isbxd
    sid = d.create()
    sh(d, sid, "mkfifo /root/fifo && ln -s /etc/shadow /root/shadow-link"
               " && ln -s ../../../../../../etc /root/up-link"
               " && python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.bind('/root/sock')\"")
    img = snapshot(d, sid)
    k = d.create(image=img)
    out = sh(d, k, "stat -c '%F' /root/fifo; readlink /root/shadow-link /root/up-link;"
                   " test -e /root/sock && echo sock-kept || echo sock-dropped")["stdout"]
    assert out == "fifo\n/etc/shadow\n../../../../../../etc\nsock-dropped\n", out
    created, _, _ = diff(d, sid)
    assert {"/root/fifo", "/root/shadow-link", "/root/up-link", "/root/sock"} <= set(created)


def test_http_delete_and_get_by_path(isbxd):
    d = isbxd
    src = d.create()
    img = snapshot(d, src)
    d.post("/sandbox/terminate", {"sandbox_id": src})
    assert d.get(f"/image/{img}").json()["image_id"] == img
    r = requests.delete(d.url + f"/v1/image/{img}", timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "deleted", r.text
    assert requests.delete(d.url + f"/v1/image/{img}", timeout=30).status_code == 404
    r = requests.put(d.url + f"/v1/image/{img}", timeout=30)
    assert r.status_code == 405 and "DELETE" in r.headers.get("Allow", ""), r.text
    assert d.post("/volume/create", {"name": "bypath", "size_mb": 16}).status_code == 200
    v = d.get("/volume/bypath")
    assert v.status_code == 200 and v.json()["size_mb"] == 16
    assert requests.delete(d.url + "/v1/volume/bypath", timeout=30).status_code == 200
    assert d.get("/volume/bypath").status_code == 404


def test_diff_keeps_names_that_are_not_utf8(isbxd):
    """A created file whose name is not UTF-8 is in the diff (U+FFFD for the bad byte);
    before, jansson refused the name and the entry was silently left out."""
    d = isbxd
    sid = d.create()
    sh(d, sid, "echo x > \"/root/a$(printf '\\377')b\" && echo y > /root/plain")
    created, _, _ = diff(d, sid)
    assert "/root/a\ufffdb" in created and "/root/plain" in created, created
