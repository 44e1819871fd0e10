"""x402 against a real sbxd: the official client (@x402/fetch + @x402/evm, via pay.mjs) pays
create, exec, status and terminate in v2 and v1 form; settlement goes to a fake
facilitator; crafted payments (wrong amount, wrong pay-to, expired, bad signature, replay)
are refused with 402 and a reason; ownership holds between payers."""
import base64
import json
import subprocess
import time

import pytest
import requests

from conftest import SBXD

from .conftest import KEYS, PAY_TO, StripV2Proxy, admin, b64json, pay, sign

CREATE = {"image": "python:3.11", "timeout": 120}


def refused(r, reason):
    """A 402 in the dual form whose error is `reason`."""
    assert r.status_code == 402, r.text
    assert r.headers["Cache-Control"] == "no-store"
    v2 = b64json(r.headers["PAYMENT-REQUIRED"])
    v1 = r.json()
    assert v2["x402Version"] == 2 and v1["x402Version"] == 1
    assert v2["error"] == reason and v1["error"] == reason, (v2["error"], v1["error"])
    return v2, v1


def test_unpaid_requests_get_the_dual_402_and_free_routes_stay_free(x402d):
    r = x402d.post("/sandbox/create", CREATE)
    v2, v1 = refused(r, "Payment required")
    acc2, acc1 = v2["accepts"][0], v1["accepts"][0]
    assert acc2["network"] == "eip155:8453" and acc1["network"] == "base"
    assert acc2["amount"] == "10000" and acc1["maxAmountRequired"] == "10000"
    assert acc2["payTo"].lower() == PAY_TO.lower()
    assert acc2["extra"] == {"name": "USD Coin", "version": "2"}
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "PAYMENT-RESPONSE" in r.headers["Access-Control-Expose-Headers"]
    # the price follows the request: 90 minutes cost 1.5 hours of the CPU rate
    r = x402d.post("/sandbox/create", {"timeout": 5400})
    assert b64json(r.headers["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == "150000"
    r = x402d.post("/sandbox/exec", {"sandbox_id": "sb_00000000000000000000", "command": "true"})
    assert b64json(r.headers["PAYMENT-REQUIRED"])["accepts"][0]["amount"] == "1000"
    # a Host header that cannot go into the offer's resource URL (not ASCII) is replaced
    # by the listen address; before, the offer could not be encoded (500)
    r = x402d.post("/sandbox/create", {}, headers={"Host": "h\xffst"})
    assert r.status_code == 402, r.text
    assert b64json(r.headers["PAYMENT-REQUIRED"])["resource"]["url"].startswith("http://127.0.0.1:")
    # an invalid exec is a 400 before any payment is asked for, as an invalid create is
    r = x402d.post("/sandbox/exec", {"sandbox_id": "sb_00000000000000000000", "command": 7})
    assert r.status_code == 400 and "PAYMENT-REQUIRED" not in r.headers, r.text
    assert r.json()["error"]["message"].startswith("command"), r.text
    for prefix in ["/v1", "/api/v1/modal", "/v1/marketplace/compute"]:
        p = x402d.get("/pricing", prefix=prefix)
        assert p.status_code == 200
        assert p.json()["create"]["burst"]["cpu"]["amount"] == 10000
        assert p.json()["x402"]["network"] == "base"
    assert x402d.get("/health").status_code == 200
    # without any identity, listing is refused (401), never offered for payment; x402 is
    # the only way in here, so the message does not ask for an API key
    r = x402d.get("/sandbox/list")
    assert r.status_code == 401 and "API key" not in r.json()["error"]["message"], r.text
    # CORS preflight is answered with the payment headers allowed
    o = requests.options(x402d.url + "/v1/sandbox/create", headers={"Origin": "https://x.test"})
    assert o.status_code == 204
    assert "PAYMENT-SIGNATURE" in o.headers["Access-Control-Allow-Headers"]
    assert "X-PAYMENT" in o.headers["Access-Control-Allow-Headers"]
    assert o.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    # the methods are the route's: raw uploads from a browser need PUT
    o = requests.options(x402d.url + "/v1/sandbox/sb_00000000000000000000/files?path=/x",
                         headers={"Origin": "https://x.test"})
    assert o.status_code == 204
    assert o.headers["Access-Control-Allow-Methods"] == "GET, PUT, OPTIONS"


def full_cycle(client, url, who, v1):
    """create, exec, status, terminate, each paid by the official client."""
    rh = "X-PAYMENT-RESPONSE" if v1 else "PAYMENT-RESPONSE"
    out = []
    c = pay(client, url + "/v1/sandbox/create", CREATE, who)
    assert c["final"]["status"] == 200, c
    sid = c["final"]["body"]["sandbox_id"]
    for path, body in [("/sandbox/exec", {"sandbox_id": sid, "command": ["python3", "-c", "print(6*7)"]}),
                       ("/sandbox/status", {"sandbox_id": sid}),
                       ("/sandbox/terminate", {"sandbox_id": sid})]:
        out.append(pay(client, url + "/v1" + path, body, who))
    out.insert(0, c)
    for res in out:
        assert res["final"]["status"] == 200, res
        legs = res["legs"]
        assert len(legs) == 2 and legs[0]["response"]["status"] == 402
        sent = legs[1]["request"]["headers"]
        assert ("x-payment" in sent) == v1 and ("payment-signature" in sent) == (not v1)
        assert rh.lower() in {k.lower() for k in res["final"]["headers"]}
        assert res["paymentResponse"]["success"] is True
        assert res["paymentResponse"]["payer"].lower() == KEYS[who][1].lower()
    assert out[1]["final"]["body"]["stdout"] == "42\n"
    assert out[2]["final"]["body"]["status"] == "running"
    assert out[3]["final"]["body"]["status"] == "terminated"
    return sid, out


def test_official_client_pays_every_call_v2(x402d, x402_client):
    sid, out = full_cycle(x402_client, x402d.url, "a", v1=False)
    x402d.created.append(sid)
    assert out[0]["paymentResponse"]["network"] == "eip155:8453"
    # every payment reached the facilitator, once, in v2 form, with the exact price
    settles = x402d.facilitator.settles
    assert [s["path"] for s in settles] == ["/settle"] * 4
    assert [s["body"]["x402Version"] for s in settles] == [2] * 4
    assert [s["body"]["paymentRequirements"]["amount"] for s in settles] == ["10000", "1000", "1000", "1000"]
    txs = [o["paymentResponse"]["transaction"] for o in out]
    assert len(set(txs)) == 4 and all(t.startswith("0x") and len(t) == 66 for t in txs)
    # each payment was verified by the facilitator too, with the same body as settled
    assert [v for v in x402d.facilitator.verifies] == [s["body"] for s in settles]


def test_facilitator_refusal_at_verify_runs_nothing(x402d, x402_client):
    x402d.facilitator.fail_verify.add(KEYS["poor"][1].lower())
    res = pay(x402_client, x402d.url + "/v1/sandbox/create", CREATE, "poor")
    assert res["final"]["status"] == 402
    assert res["paymentRequired"]["error"] == "invalid_exact_evm_insufficient_balance"
    assert x402d.facilitator.count() == 0 and len(x402d.facilitator.verifies) == 1
    p = sign(x402_client, who="poor", value=0)
    assert x402d.get("/sandbox/list", headers={"PAYMENT-SIGNATURE": p["header"]}).json()["count"] == 0
    # the authorization was not consumed: once funded, the same one pays
    x402d.facilitator.fail_verify.clear()
    hdr = base64.b64encode(json.dumps(res["paymentPayload"]).encode()).decode()
    r = x402d.post("/sandbox/create", CREATE, headers={"PAYMENT-SIGNATURE": hdr})
    assert r.status_code == 200, r.text
    x402d.created.append(r.json()["sandbox_id"])


def test_official_client_pays_every_call_v1(x402d, x402_client):
    proxy = StripV2Proxy(x402d.url)
    try:
        sid, out = full_cycle(x402_client, proxy.url, "b", v1=True)
    finally:
        proxy.close()
    x402d.created.append(sid)
    assert out[0]["paymentResponse"]["network"] == "base"
    settles = x402d.facilitator.settles
    assert [s["body"]["x402Version"] for s in settles] == [1] * 4
    assert settles[0]["body"]["paymentRequirements"]["maxAmountRequired"] == "10000"


def test_replayed_payment_is_refused_and_a_resend_gets_the_stored_answer(x402d, x402_client):
    c = pay(x402_client, x402d.url + "/v1/sandbox/create", CREATE, "c")
    assert c["final"]["status"] == 200
    sid = c["final"]["body"]["sandbox_id"]
    x402d.created.append(sid)
    hdr = base64.b64encode(json.dumps(c["paymentPayload"]).encode()).decode()
    n = x402d.facilitator.count()
    # the same authorization for another create: refused, nothing runs, nothing settles
    r = x402d.post("/sandbox/create", {**CREATE, "env": {"X": "1"}}, headers={"PAYMENT-SIGNATURE": hdr})
    refused(r, "payment_already_used")
    # the very same request re-sent (a client that lost the answer): the stored answer,
    # no second sandbox, no second charge
    r = x402d.post("/sandbox/create", CREATE, headers={"PAYMENT-SIGNATURE": hdr})
    assert r.status_code == 200 and r.json()["sandbox_id"] == sid
    assert b64json(r.headers["PAYMENT-RESPONSE"])["transaction"] == c["paymentResponse"]["transaction"]
    assert x402d.facilitator.count() == n
    # a status payment replayed against the same sandbox with another body is refused too
    p = sign(x402_client, who="c", value=1000)
    r = x402d.post("/sandbox/status", {"sandbox_id": sid}, headers={"PAYMENT-SIGNATURE": p["header"]})
    assert r.status_code == 200
    r = x402d.post("/sandbox/status", {"sandbox_id": sid, "x": 1}, headers={"PAYMENT-SIGNATURE": p["header"]})
    refused(r, "payment_already_used")
    rows = admin(x402d.state_dir, "settlements", "--all").stdout.splitlines()
    assert len([l for l in rows if json.loads(l)["payer"] == KEYS["c"][1].lower()]) == 2


@pytest.mark.parametrize("defect,reason", [
    ("amount", "wrong_amount"),
    ("pay_to", "wrong_recipient"),
    ("expired", "expired"),
    ("signature", "bad_signature"),
    ("v1_amount", "wrong_amount"),
])
def test_bad_payments_are_refused_with_a_reason(x402d, x402_client, defect, reason):
    now = int(time.time())
    other = "0x1111111111111111111111111111111111111111"
    kw = {"who": "a", "value": 10000}
    if defect == "amount":
        kw.update(value=9999, amount=10000)
    elif defect == "pay_to":
        kw.update(to=other, payTo=PAY_TO)
    elif defect == "expired":
        kw.update(validAfter=now - 900, validBefore=now - 1)
    elif defect == "v1_amount":
        kw.update(version=1, value=10001)
    p = sign(x402_client, **kw)
    hdr = p["header"]
    if defect == "signature":
        obj = b64json(hdr)
        sig = obj["payload"]["signature"]
        obj["payload"]["signature"] = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]
        hdr = base64.b64encode(json.dumps(obj).encode()).decode()
    name = "X-PAYMENT" if kw.get("version") == 1 else "PAYMENT-SIGNATURE"
    r = x402d.post("/sandbox/create", CREATE, headers={name: hdr})
    refused(r, reason)
    assert x402d.facilitator.count() == 0
    # a refused authorization was not recorded: nothing in the ledger
    assert admin(x402d.state_dir, "settlements", "--all").stdout == ""


def test_ownership_between_two_payers(x402d, x402_client):
    c = pay(x402_client, x402d.url + "/v1/sandbox/create", CREATE, "a")
    assert c["final"]["status"] == 200
    sid = c["final"]["body"]["sandbox_id"]
    x402d.created.append(sid)
    # payer b pays for exec/status/terminate on a's sandbox: not found, and not charged
    n = x402d.facilitator.count()
    for path, body in [("/sandbox/exec", {"sandbox_id": sid, "command": "id"}),
                       ("/sandbox/status", {"sandbox_id": sid}),
                       ("/sandbox/terminate", {"sandbox_id": sid})]:
        res = pay(x402_client, x402d.url + "/v1" + path, body, "b")
        assert res["final"]["status"] == 404, res["final"]
        assert res["final"]["body"]["error"]["code"] == "sandbox_not_found"
    assert x402d.facilitator.count() == n
    # listing proves the caller with a signed authorization (never settled): b sees nothing
    pb = sign(x402_client, who="b", value=0)
    r = x402d.get("/sandbox/list", headers={"PAYMENT-SIGNATURE": pb["header"]})
    assert r.status_code == 200 and r.json()["count"] == 0
    pa = sign(x402_client, who="a", value=0)
    r = x402d.get("/sandbox/list", headers={"PAYMENT-SIGNATURE": pa["header"]})
    assert [s["sandbox_id"] for s in r.json()["sandboxes"]] == [sid]
    u = x402d.get("/usage", headers={"PAYMENT-SIGNATURE": pa["header"]}).json()
    assert u["owner"] == "x402:" + KEYS["a"][1].lower()
    assert u["total_charged"]["amount"] == 10000 and u["charges"][0]["sandbox_id"] == sid
    # a's own status still works
    res = pay(x402_client, x402d.url + "/v1/sandbox/status", {"sandbox_id": sid}, "a")
    assert res["final"]["status"] == 200


def test_failed_settlement_rolls_back_the_create(x402d, x402_client):
    x402d.facilitator.fail.add(KEYS["poor"][1].lower())
    res = pay(x402_client, x402d.url + "/v1/sandbox/create", CREATE, "poor")
    assert res["final"]["status"] == 402
    assert res["paymentResponse"]["success"] is False
    assert res["paymentRequired"]["error"] == "insufficient_funds"
    assert x402d.facilitator.count() == 1
    p = sign(x402_client, who="poor", value=0)
    sbs = x402d.get("/sandbox/list", headers={"PAYMENT-SIGNATURE": p["header"]}).json()["sandboxes"]
    assert len(sbs) == 1 and sbs[0]["status"] == "terminated"
    x402d.created.append(sbs[0]["sandbox_id"])
    u = x402d.get("/usage", headers={"PAYMENT-SIGNATURE": p["header"]}).json()
    assert u["total_charged"]["amount"] == 0
    assert [c["state"] for c in u["charges"]] == ["refunded"]


def test_without_facilitator_sbxd_needs_queue_settlements(python_image, tmp_path):
    # Queued payments are checked against nothing on the chain: any new address would get
    # every call run. sbxd refuses to start that way unless the operator says so.
    r = subprocess.run([str(SBXD), "--auth", "x402", "--pay-to", PAY_TO, "--state-dir",
                        str(tmp_path), "--no-prepare-image", "--listen", "127.0.0.1:1",
                        "--pool-size", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r
    assert "--queue-settlements" in r.stderr, r.stderr


def test_without_facilitator_payments_queue(money_sbxd, x402_client, facilitator):
    d = money_sbxd("--auth", "x402", "--pay-to", PAY_TO, "--queue-settlements")
    res = pay(x402_client, d.url + "/v1/sandbox/create", CREATE, "a")
    assert res["final"]["status"] == 200
    d.created.append(res["final"]["body"]["sandbox_id"])
    assert res["paymentResponse"]["success"] is True
    rows = [json.loads(l) for l in admin(d.state_dir, "settlements").stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["settlement"] == "queued"
    assert rows[0]["settle_body"]["paymentPayload"] == res["paymentPayload"]
    assert rows[0]["sandbox_id"] == res["final"]["body"]["sandbox_id"]
    # later submission through a facilitator
    out = admin(d.state_dir, "settlements", "submit", facilitator.url).stdout
    assert " settled 0x" in out
    assert facilitator.settles[0]["body"] == rows[0]["settle_body"]
    assert admin(d.state_dir, "settlements").stdout == ""
    done = [json.loads(l) for l in admin(d.state_dir, "settlements", "--all").stdout.splitlines()]
    assert done[0]["settlement"] == "settled" and done[0]["tx_hash"].startswith("0x")
    # the answer stored for a re-sent request now names the transaction (it had none)
    assert res["paymentResponse"]["transaction"] == ""
    hdr = base64.b64encode(json.dumps(res["paymentPayload"]).encode()).decode()
    r = d.post("/sandbox/create", CREATE, headers={"PAYMENT-SIGNATURE": hdr})
    assert r.status_code == 200 and r.json()["sandbox_id"] == res["final"]["body"]["sandbox_id"]
    receipt = b64json(r.headers["PAYMENT-RESPONSE"])
    assert receipt["transaction"] == done[0]["tx_hash"] and receipt["success"] is True


def test_keys_and_x402_together(money_sbxd, facilitator, x402_client):
    d = money_sbxd("--auth", "api_key,x402", "--pay-to", PAY_TO, "--facilitator", facilitator.url)
    admin(d.state_dir, "account", "create", "kate", "--balance", "$0.05")
    key = admin(d.state_dir, "key", "create", "kate").stdout.strip()
    # a key pays from its balance (no 402 offer), a browser may call (CORS, no 403)
    r = d.post("/sandbox/create", CREATE, headers={"Authorization": f"Bearer {key}",
                                                   "Origin": "https://app.example"})
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    d.created.append(r.json()["sandbox_id"])
    assert facilitator.count() == 0
    # without a key the call is offered for x402, and the official client pays it
    refused(d.post("/sandbox/create", CREATE), "Payment required")
    res = pay(x402_client, d.url + "/v1/sandbox/create", CREATE, "b")
    assert res["final"]["status"] == 200
    d.created.append(res["final"]["body"]["sandbox_id"])
    assert facilitator.count() == 1
    # a wrong key is refused even when a payment is attached
    r = d.post("/sandbox/create", CREATE, headers={"Authorization": "Bearer sk-" + "0" * 64})
    assert r.status_code == 401


def test_call_priced_at_zero_is_offered_for_zero_and_the_official_client_makes_it(
        money_sbxd, facilitator, x402_client, tmp_path):
    """A lifecycle call whose configured price is 0 still needs the caller's identity. It
    was answered 401, which x402 clients cannot act on (they react to 402 only), so an
    x402 caller could never terminate its sandbox: now it is a 402 offer of 0, and the
    authorization of value 0 the official client signs for it is the proof of identity
    (never recorded nor settled)."""
    cfg = tmp_path / "sbxd.json"
    cfg.write_text(json.dumps({"pricing": {"status": 0, "terminate": 0}}))
    d = money_sbxd("--auth", "x402", "--pay-to", PAY_TO, "--facilitator", facilitator.url,
                   "--config", str(cfg))
    res = pay(x402_client, d.url + "/api/v1/modal/sandbox/create", CREATE, "a")
    assert res["final"]["status"] == 200, res["final"]
    sid = res["final"]["body"]["sandbox_id"]
    d.created.append(sid)
    body = {"sandbox_id": sid}
    v2, v1 = refused(d.post("/sandbox/terminate", body, prefix="/api/v1/modal"), "Payment required")
    assert v2["accepts"][0]["amount"] == "0" and v1["accepts"][0]["maxAmountRequired"] == "0"
    # somebody else's proof does not reach the sandbox
    res = pay(x402_client, d.url + "/api/v1/modal/sandbox/terminate", body, "b")
    assert res["final"]["status"] == 404, res["final"]
    res = pay(x402_client, d.url + "/api/v1/modal/sandbox/status", body, "a")
    assert res["final"]["status"] == 200 and res["final"]["body"]["status"] == "running"
    assert res["paymentPayload"]["payload"]["authorization"]["value"] == "0"
    res = pay(x402_client, d.url + "/api/v1/modal/sandbox/terminate", body, "a")
    assert res["final"]["status"] == 200, res["final"]
    assert res["final"]["body"] == {"sandbox_id": sid, "status": "terminated"}
    # only the create was settled; list and usage still want a proof first (401)
    assert facilitator.count() == 1
    assert d.get("/sandbox/list").status_code == 401


def test_kill9_while_settling_keeps_one_charge_and_the_answer(x402d, x402_client):
    """Crash point: the create ran and was recorded, sbxd waits for the facilitator."""
    import threading
    fac = x402d.facilitator
    fac.hold.add(KEYS["a"][1].lower())
    p = sign(x402_client, who="a", value=10000)
    hdr = {"PAYMENT-SIGNATURE": p["header"]}
    out = {}

    def call():
        try:
            out["r"] = x402d.post("/sandbox/create", CREATE, headers=hdr)
        except requests.RequestException as e:
            out["e"] = e

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 30
    while fac.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fac.count() == 1
    x402d.kill9()
    t.join()
    fac.release.set()
    assert "e" in out  # the client never got its answer
    x402d.start()
    rows = [json.loads(l) for l in admin(x402d.state_dir, "settlements").stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["settlement"] == "queued"  # back in the queue
    sid = rows[0]["sandbox_id"]
    x402d.created.append(sid)
    # re-sending the same payment gets the stored answer: the same sandbox, nothing new
    r = x402d.post("/sandbox/create", CREATE, headers=hdr)
    assert r.status_code == 200 and r.json()["sandbox_id"] == sid
    assert fac.count() == 1
    proof = {"PAYMENT-SIGNATURE": sign(x402_client, who="a", value=0)["header"]}
    u = x402d.get("/usage", headers=proof).json()
    assert u["total_charged"]["amount"] == 10000 and u["charges_count"] == 1
    sbs = x402d.get("/sandbox/list", headers=proof).json()["sandboxes"]
    assert [(s["sandbox_id"], s["status"]) for s in sbs] == [(sid, "running")]


def test_one_authorization_sent_concurrently_is_served_once(x402d, x402_client):
    import threading
    c = pay(x402_client, x402d.url + "/v1/sandbox/create", CREATE, "a")
    sid = c["final"]["body"]["sandbox_id"]
    x402d.created.append(sid)
    n = x402d.facilitator.count()
    p = sign(x402_client, who="a", value=1000)
    codes, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def call(i):
        start.wait()
        r = requests.post(x402d.url + "/v1/sandbox/exec",
                          json={"sandbox_id": sid, "command": f"echo {i} >> /tmp/ran"},
                          headers={"PAYMENT-SIGNATURE": p["header"]}, timeout=60)
        with lock:
            codes.append(r.status_code)
            if r.status_code == 402:
                errors.append(r.json()["error"])

    ts = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(codes) == [200] + [402] * 19
    assert set(errors) <= {"payment_in_progress", "payment_already_used"}
    assert x402d.facilitator.count() == n + 1
    q = sign(x402_client, who="a", value=1000)
    r = x402d.post("/sandbox/exec", {"sandbox_id": sid, "command": "wc -l < /tmp/ran"},
                   headers={"PAYMENT-SIGNATURE": q["header"]})
    assert r.json()["stdout"].strip() == "1"  # exactly one command ran
