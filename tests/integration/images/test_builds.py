"""Image builds against a real sbxd: apt packages from Debian, files, run_commands in a
build sandbox, the same spec built once, a spec extending another reusing its layers."""
import time


def wait_ready(d, image_id, seconds=600):
    deadline = time.monotonic() + seconds
    while True:
        r = d.get(f"/image/{image_id}")
        assert r.status_code == 200, r.text
        j = r.json()
        if j["status"] != "building":
            return j
        assert time.monotonic() < deadline, j
        time.sleep(0.2)


def build(d, spec):
    r = d.post("/image/build", spec)
    assert r.status_code in (200, 202), r.text
    return r.json()


def sh(d, sid, cmd):
    r = d.exec(sid, ["/bin/sh", "-c", cmd])
    assert r.status_code == 200, r.text
    return r.json()


SPEC = {
    "base": "debian:bookworm",
    "apt_install": ["jq"],
    "files": {"/app/in.json": '{"answer": 42}\n'},
    "run_commands": ["jq .answer /app/in.json > /app/out.txt",
                     "(exec 3<>/dev/tcp/151.101.2.132/80) 2>/dev/null && echo net > /app/net"
                     " || echo no-network > /app/net"],
    "env": {"GREETING": "hello"},
    "workdir": "/app",
}


def test_build_with_apt_and_run_then_use(isbxd):
    d = isbxd
    first = build(d, SPEC)
    img = first["image_id"]
    assert img.startswith("img_")
    info = wait_ready(d, img)
    assert info["status"] == "ready", info.get("error", "") + (info.get("log") or "")
    assert info["kind"] == "build" and info["env"] == {"GREETING": "hello"}
    assert info["workdir"] == "/app" and len(info["layers"]) == 2
    assert "jq" in info["log"] and "build sandbox" in info["log"]
    sid = d.create(image=img)
    j = sh(d, sid, 'pwd; echo "$GREETING"; cat out.txt net; echo \'{"x":[1,2]}\' | jq -c .x;'
                   ' dpkg -s jq | grep Status')
    assert j["exit_code"] == 0, j
    assert j["stdout"] == "/app\nhello\n42\nno-network\n[1,2]\nStatus: install ok installed\n"
    # the host never ran the commands
    import os
    assert not os.path.exists("/app/out.txt")

    # the same spec again (keys in another order): the same image, not built again
    again = build(d, dict(reversed(list(SPEC.items()))))
    assert again == {"image_id": img, "status": "ready", "cached": True}
    assert wait_ready(d, img)["log"].count("build of ") == 1

    # a spec extending it (the apt step is shared) reuses that layer
    ext = dict(SPEC, run_commands=SPEC["run_commands"] + ["echo more > /app/more"])
    e = build(d, ext)
    assert e["image_id"] != img
    einfo = wait_ready(d, e["image_id"])
    assert einfo["status"] == "ready", einfo
    assert einfo["layers"][0] == info["layers"][0]
    assert "exists: reused" in einfo["log"]
    # and an image can be the base of another
    child = build(d, {"base": img, "run_commands": ["cp out.txt copy.txt"]})
    cinfo = wait_ready(d, child["image_id"])
    assert cinfo["status"] == "ready", cinfo
    assert cinfo["layers"][:2] == info["layers"] and cinfo["parent"] == img
    sid2 = d.create(image=child["image_id"])
    assert sh(d, sid2, "cat /app/copy.txt; echo $GREETING")["stdout"] == "42\nhello\n"
    # in use by a sandbox and by another image: not deletable
    r = d.post("/image/delete", {"image_id": img})
    assert r.status_code == 409, r.text


def test_failed_build_reports_and_can_retry(isbxd):
    d = isbxd
    spec = {"base": "debian:bookworm", "run_commands": ["echo before", "echo oops >&2; exit 3"]}
    b = build(d, spec)
    info = wait_ready(d, b["image_id"])
    assert info["status"] == "failed"
    assert "exit status 3" in info["error"] and "oops" in info["log"]
    r = d.post("/sandbox/create", {"image": b["image_id"]})
    assert r.status_code == 400, r.text
    # posting it again tries again
    b2 = build(d, spec)
    assert b2["image_id"] == b["image_id"] and b2["status"] == "building"
    assert wait_ready(d, b["image_id"])["status"] == "failed"


def test_unknown_package_fails_cleanly(isbxd):
    d = isbxd
    b = build(d, {"base": "debian:bookworm", "apt_install": ["no-such-package-sbx"]})
    info = wait_ready(d, b["image_id"])
    assert info["status"] == "failed" and "apt-get" in info["error"], info


def test_build_spec_validation(isbxd):
    d = isbxd
    for spec in [{"base": "ubuntu:22.04"}, {"apt_install": ["Bad Name"]},
                 {"apt_install": ["jq; rm -rf /"]}, {"apt_install": "jq"},
                 {"run_commands": [""]}, {"run_commands": "ls"}, {"env": {"1X": "y"}},
                 {"workdir": "rel"}, {"files": {"rel/x": "y"}}, {"files": {"/proc/x": "y"}},
                 {"files": {"/a/../b": "y"}}, {"base": "img_" + "0" * 32}]:
        r = d.post("/image/build", spec)
        assert r.status_code == 400, (spec, r.text)
    assert d.get("/image/img_" + "0" * 32).status_code == 404
