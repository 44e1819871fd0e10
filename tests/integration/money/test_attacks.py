"""A hostile caller against a real sbxd with auth on: ways to reach another owner's sandbox,
to prove an identity with somebody else's (public) payment, or to get priced work for free.
Each test here failed against the build before its fix (docs/payments.md says the rule)."""
import json

import pytest
import requests

from .test_api_keys import balance, new_key




@pytest.fixture
def keyd(money_sbxd):
    return money_sbxd("--auth", "api_key")


def test_path_id_routes_ignore_a_body_naming_the_callers_own_sandbox(keyd):
    """GET /sandbox/{victim}/files|archive with a JSON body {"sandbox_id": <own sandbox>}:
    the handler serves the path's sandbox, so ownership must be checked on the path's id."""
    d = keyd
    ha = new_key(d, "vera", "$1")
    hb = new_key(d, "mallory", "$1")
    victim = d.post("/sandbox/create", {"timeout": 120}, headers=ha).json()["sandbox_id"]
    d.created.append(victim)
    mine = d.post("/sandbox/create", {"timeout": 120}, headers=hb).json()["sandbox_id"]
    d.created.append(mine)
    w = {"sandbox_id": victim, "path": "/tmp/secret", "content": "victim-secret"}
    assert d.post("/sandbox/files/write", w, headers=ha).status_code == 200
    decoy = json.dumps({"sandbox_id": mine}).encode()
    hj = {**hb, "Content-Type": "application/json"}
    for what, params in [("files", {"path": "/tmp/secret"}), ("archive", {"path": "/tmp"})]:
        r = requests.get(f"{d.url}/v1/sandbox/{victim}/{what}", params=params, data=decoy,
                         headers=hj, timeout=60)
        assert r.status_code == 404, (what, r.status_code, r.content[:200])
        assert b"victim-secret" not in r.content
        # the owner still reads it, with or without a body
        r = requests.get(f"{d.url}/v1/sandbox/{victim}/{what}", params=params, headers=ha,
                         timeout=60)
        assert r.status_code == 200 and b"victim-secret" in r.content, what
    # and the other way round: a body naming the victim on a path of one's own sandbox is
    # refused as well (the two ids must not disagree)
    r = requests.get(f"{d.url}/v1/sandbox/{mine}/files", params={"path": "/tmp/secret"},
                     data=json.dumps({"sandbox_id": victim}).encode(), headers=hj, timeout=60)
    assert b"victim-secret" not in r.content
    # body routes keep taking the body's id: the path of a body route names no sandbox
    r = d.post("/sandbox/files/read", {"sandbox_id": victim, "path": "/tmp/secret"}, headers=hb)
    assert r.status_code == 404
    assert balance(d, hb) == 990000  # nothing but mallory's own create was charged

