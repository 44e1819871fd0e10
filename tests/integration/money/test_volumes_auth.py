"""Volumes have no owner yet: with auth on, a create that names one is refused (403,
nothing charged), so a paying caller cannot mount a volume made while auth was off by
guessing its name."""
from .test_api_keys import balance, new_key


def test_create_with_a_volume_is_refused_with_auth_on(money_sbxd):
    d = money_sbxd()
    assert d.post("/volume/create", {"name": "private", "size_mb": 16}).status_code == 200
    sid = d.create(volumes={"/v": "private"})
    r = d.exec(sid, ["/bin/sh", "-c", "echo the-owners-data > /v/secret"])
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    d.post("/sandbox/terminate", {"sandbox_id": sid})
    d.stop()
    d.extra_args = ["--auth", "api_key"]
    d.start()
    try:
        h = new_key(d, "mallory", 10**9)
        before = balance(d, h)
        for vols in ({"/v": "private"}, {"/data": "private"}, {}):
            r = d.post("/sandbox/create", {"volumes": vols}, headers=h)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
        assert balance(d, h) == before
        # a create without volumes still works and sees no volume
        r = d.post("/sandbox/create", {}, headers=h)
        assert r.status_code == 200, r.text
        s2 = r.json()["sandbox_id"]
        r = d.post("/sandbox/exec", {"sandbox_id": s2, "command": ["cat", "/v/secret"]}, headers=h)
        assert r.status_code == 200 and r.json()["exit_code"] != 0, r.text
    finally:
        d.stop()
        d.extra_args = []
        d.start()
        d.terminate_all()
        assert d.post("/volume/delete", {"name": "private"}).status_code == 200
