"""A hostile caller against a real sbxd with auth on: ways to reach another owner's sandbox,
to prove an identity with somebody else's (public) payment, or to get priced work for free.
Each test here failed against the build before its fix (docs/payments.md says the rule)."""
import base64
import json

import pytest
import requests

from .conftest import KEYS, PAY_TO, b64json, pay, sign
from .test_api_keys import balance, new_key

CREATE = {"image": "python:3.11", "timeout": 120}


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


def test_a_settled_payment_is_no_proof_of_identity(x402d, x402_client):
    """Once settled, a payment's authorization (from, to, value, window, nonce, v, r, s) is
    public: it is the calldata of transferWithAuthorization on the chain, and the
    facilitator saw it too. Whoever rebuilds the header from it must not become the payer
    on the free routes (list, usage, files, processes) for the rest of its window."""
    d = x402d
    c = pay(x402_client, d.url + "/v1/sandbox/create", CREATE, "a")
    assert c["final"]["status"] == 200, c
    sid = c["final"]["body"]["sandbox_id"]
    d.created.append(sid)
    assert c["paymentResponse"]["success"] is True
    # what the victim's own, zero-value proof can do
    own = {"PAYMENT-SIGNATURE": sign(x402_client, who="a", value=0)["header"]}
    w = {"sandbox_id": sid, "path": "/tmp/secret", "content": "victim-secret"}
    assert d.post("/sandbox/files/write", w, headers=own).status_code == 200
    assert d.get("/sandbox/list", headers=own).json()["count"] == 1
    # the settled payment, as rebuilt from the chain, in either header
    auth = c["paymentPayload"]["payload"]["authorization"]
    assert auth["value"] == "10000"
    v2 = base64.b64encode(json.dumps(c["paymentPayload"]).encode()).decode()
    v1 = base64.b64encode(json.dumps({"x402Version": 1, "scheme": "exact", "network": "base",
                                      "payload": c["paymentPayload"]["payload"]}).encode()).decode()
    for stolen in [{"PAYMENT-SIGNATURE": v2}, {"X-PAYMENT": v1}]:
        for r in [d.get("/sandbox/list", headers=stolen),
                  d.get("/usage", headers=stolen),
                  d.post("/sandbox/files/read", {"sandbox_id": sid, "path": "/tmp/secret"},
                         headers=stolen),
                  d.post("/sandbox/files/write", {**w, "content": "planted"}, headers=stolen),
                  d.post("/sandbox/process/list", {"sandbox_id": sid}, headers=stolen),
                  requests.get(f"{d.url}/v1/sandbox/{sid}/files", params={"path": "/tmp/secret"},
                               headers=stolen, timeout=60)]:
            assert r.status_code == 402, (r.request.url, r.status_code, r.text[:200])
            assert b"victim-secret" not in r.content
            assert r.json()["error"] == "wrong_amount"
    r = d.post("/sandbox/files/read", {"sandbox_id": sid, "path": "/tmp/secret"}, headers=own)
    assert r.status_code == 200 and "victim-secret" in r.text
    # a signed authorization of any other non-zero value is no proof either
    p = sign(x402_client, who="a", value=1)
    r = d.get("/sandbox/list", headers={"PAYMENT-SIGNATURE": p["header"]})
    assert r.status_code == 402 and r.json()["error"] == "wrong_amount"
    assert b64json(r.headers["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == "0"
    assert d.facilitator.count() == 1


def test_an_owner_check_that_cannot_read_the_store_fails_closed(keyd):
    """When the store cannot say whose a sandbox is, the request must not reach a handler
    that does not ask (it was let through: another account read the file). The store is
    made to fail by renaming the column the owner check reads, then restored."""
    import subprocess
    d = keyd
    ha = new_key(d, "olga", "$1")
    hb = new_key(d, "trudy", "$1")
    sid = d.post("/sandbox/create", {"timeout": 120}, headers=ha).json()["sandbox_id"]
    d.created.append(sid)
    w = {"sandbox_id": sid, "path": "/tmp/secret", "content": "victim-secret"}
    assert d.post("/sandbox/files/write", w, headers=ha).status_code == 200
    db = str(d.state_dir / "sbx.db")

    def sql(q):
        subprocess.run(["sqlite3", db, q], check=True, capture_output=True, timeout=60)

    sql("ALTER TABLE sandboxes RENAME COLUMN owner TO owner_gone")
    try:
        r = d.post("/sandbox/files/read", {"sandbox_id": sid, "path": "/tmp/secret"}, headers=hb)
        r2 = requests.get(f"{d.url}/v1/sandbox/{sid}/files", params={"path": "/tmp/secret"},
                          headers=hb, timeout=60)
    finally:
        sql("ALTER TABLE sandboxes RENAME COLUMN owner_gone TO owner")
    for x in (r, r2):
        assert x.status_code == 503, (x.status_code, x.text[:200])
        assert b"victim-secret" not in x.content
    r = d.post("/sandbox/files/read", {"sandbox_id": sid, "path": "/tmp/secret"}, headers=hb)
    assert r.status_code == 404
    r = d.post("/sandbox/files/read", {"sandbox_id": sid, "path": "/tmp/secret"}, headers=ha)
    assert r.status_code == 200 and "victim-secret" in r.text


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def with_payload(header, fn, version=None):
    """The payment header after fn(obj) changed its decoded JSON; version 1 rewraps the
    payload as an X-PAYMENT object."""
    obj = b64json(header)
    fn(obj)
    if version == 1:
        obj = {"x402Version": 1, "scheme": "exact", "network": "base", "payload": obj["payload"]}
    return base64.b64encode(json.dumps(obj).encode()).decode()


def high_s(obj):
    sig = bytes.fromhex(obj["payload"]["signature"][2:])
    s = SECP256K1_N - int.from_bytes(sig[32:64], "big")
    v = 55 - sig[64]  # 27 <-> 28
    obj["payload"]["signature"] = "0x" + (sig[:32] + s.to_bytes(32, "big") + bytes([v])).hex()


def v_as_parity(obj):
    sig = obj["payload"]["signature"]
    obj["payload"]["signature"] = sig[:-2] + ("00" if sig[-2:] == "1b" else "01")


def test_one_authorization_pays_once_whatever_its_form(x402d, x402_client):
    """Replays of one signed authorization in every other form sbxd could be shown: the
    other header version, another operation or sandbox, the nonce in upper case (the
    signature covers bytes, not text), a malleated signature; and payments whose window
    or payer field is off. Each refusal costs nothing and settles nothing."""
    import time
    d = x402d
    sids = []
    for _ in range(2):
        c = sign(x402_client, who="a", value=10000)
        r = d.post("/sandbox/create", CREATE, headers={"PAYMENT-SIGNATURE": c["header"]})
        assert r.status_code == 200, r.text
        sids.append(r.json()["sandbox_id"])
        d.created.append(sids[-1])
    fac = d.facilitator
    assert fac.count() == 2
    p = sign(x402_client, who="a", value=1000)
    st = {"sandbox_id": sids[0]}
    first = d.post("/sandbox/status", st, headers={"PAYMENT-SIGNATURE": p["header"]})
    assert first.status_code == 200
    assert fac.count() == 3
    v1 = with_payload(p["header"], lambda o: None, version=1)
    upper = with_payload(p["header"], lambda o: o["payload"]["authorization"].update(
        nonce="0x" + o["payload"]["authorization"]["nonce"][2:].upper()))
    ex = {"sandbox_id": sids[0], "command": "echo ran >> /tmp/ran"}
    attempts = [
        ("/sandbox/exec", ex, {"X-PAYMENT": v1}, "payment_already_used"),
        ("/sandbox/exec", ex, {"PAYMENT-SIGNATURE": p["header"]}, "payment_already_used"),
        ("/sandbox/status", {"sandbox_id": sids[1]}, {"PAYMENT-SIGNATURE": p["header"]},
         "payment_already_used"),
        ("/sandbox/status", {"sandbox_id": sids[1]}, {"X-PAYMENT": v1}, "payment_already_used"),
        ("/sandbox/exec", ex, {"PAYMENT-SIGNATURE": upper}, "payment_already_used"),
        ("/sandbox/exec", ex, {"PAYMENT-SIGNATURE": with_payload(p["header"], high_s)},
         "signature_high_s"),
        ("/sandbox/exec", ex, {"PAYMENT-SIGNATURE": with_payload(p["header"], v_as_parity)},
         "signature_bad_v"),
    ]
    for path, body, hdr, reason in attempts:
        r = d.post(path, body, headers=hdr)
        assert r.status_code == 402, (path, hdr.keys(), r.status_code, r.text[:200])
        assert r.json()["error"] == reason, (path, reason, r.json()["error"])
    # the same request in the other version is a re-send: the stored answer, nothing new
    r = d.post("/sandbox/status", st, headers={"X-PAYMENT": v1})
    assert r.status_code == 200 and r.json() == first.json()
    assert fac.count() == 3
    # a fresh authorization is not spent by refused malleated copies of it
    q = sign(x402_client, who="a", value=1000)
    for bad, reason in [(high_s, "signature_high_s"), (v_as_parity, "signature_bad_v")]:
        r = d.post("/sandbox/exec", ex, headers={"PAYMENT-SIGNATURE": with_payload(q["header"], bad)})
        assert r.status_code == 402 and r.json()["error"] == reason
    # the payer field must be the signer: a's signature naming b as payer is b's nothing
    forged = with_payload(q["header"], lambda o: o["payload"]["authorization"].update(
        **{"from": KEYS["b"][1]}))
    r = d.post("/sandbox/exec", ex, headers={"PAYMENT-SIGNATURE": forged})
    assert r.status_code == 402 and r.json()["error"] == "bad_signature"
    assert d.post("/sandbox/exec", ex, headers={"PAYMENT-SIGNATURE": q["header"]}).status_code == 200
    # validity windows: not yet valid is refused; a far-future one pays once, like any other
    now = int(time.time())
    r = d.post("/sandbox/exec", ex, headers={"PAYMENT-SIGNATURE": sign(
        x402_client, who="a", value=1000, validAfter=now + 600, validBefore=now + 900)["header"]})
    assert r.status_code == 402 and r.json()["error"] == "not_yet_valid"
    for vb in [now + 10 * 365 * 86400, str(2 ** 200)]:  # a string: JSON numbers lose digits in JS
        far = sign(x402_client, who="a", value=1000, validBefore=vb)["header"]
        r = d.post("/sandbox/exec", ex, headers={"PAYMENT-SIGNATURE": far})
        assert r.status_code == 200, (vb, r.text[:300])
        r = d.post("/sandbox/exec", {**ex, "command": "true"}, headers={"PAYMENT-SIGNATURE": far})
        assert r.status_code == 402 and r.json()["error"] == "payment_already_used"
    assert fac.count() == 6
    proof = {"PAYMENT-SIGNATURE": sign(x402_client, who="a", value=0)["header"]}
    r = d.post("/sandbox/files/read", {"sandbox_id": sids[0], "path": "/tmp/ran"}, headers=proof)
    assert r.json()["content"] == "ran\n" * 3  # q and the two far-future payments, nothing else
    u = d.get("/usage", headers=proof).json()
    assert u["total_charged"]["amount"] == 2 * 10000 + 4 * 1000
