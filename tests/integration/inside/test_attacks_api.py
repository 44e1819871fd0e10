"""Hostile requests to the files API of a real sbxd: arguments that a C string would cut."""
import requests


def test_nul_in_a_query_argument_is_refused(sbxd, sid):
    # "%00" decodes to a NUL byte: handed on as a C string, "?path=/tmp/nul%00b" became
    # "/tmp/nul" and a PUT wrote there (200). A NUL in a JSON path is already a 400.
    for kind in ("files", "archive"):
        base = f"{sbxd.url}/v1/sandbox/{sid}/{kind}"
        for q in ("path=/tmp/nul%00b", "path=/tmp/nul&mode=644%00", "pa%00th=/tmp/nul"):
            r = requests.put(f"{base}?{q}", data=b"x")
            assert r.status_code == 400, (kind, q, r.text)
            assert r.json()["error"]["code"] == "invalid_request"
            assert requests.get(f"{base}?{q}").status_code == 400, (kind, q)
    r = sbxd.post("/sandbox/files/stat", {"sandbox_id": sid, "path": "/tmp/nul"})
    assert r.status_code == 404, r.text


def test_a_command_too_large_for_one_request_is_a_400(sbxd, sid):
    # Arguments past the agent protocol's bound of one command (1 MiB encoded) were a 500
    # "could not encode the command"; it is the caller's request that is too large.
    huge = "x" * (1 << 20)
    for path, body in (("/sandbox/exec", {"command": ["echo", huge]}),
                       ("/sandbox/exec", {"command": "echo " + huge}),
                       ("/sandbox/exec", {"command": ["echo", huge], "background": True})):
        r = sbxd.post(path, {"sandbox_id": sid, **body})
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        err = r.json()["error"]
        assert err["code"] == "invalid_request" and "1048576 bytes" in err["message"], err
    r = sbxd.post("/sandbox/exec", {"sandbox_id": sid, "command": ["echo", "still here"]})
    assert r.status_code == 200 and r.json()["stdout"] == "still here\n", r.text
