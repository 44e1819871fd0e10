"""API keys against a real sbxd: balances debited per call, 402 with the price when the
balance cannot pay, no overdraft under 50 concurrent calls, revoked keys refused,
ownership between accounts, and a kill -9 in the middle of a paid exec."""
import subprocess
import threading
import time

import pytest
import requests

from .conftest import admin


def new_key(d, account, balance=None):
    if balance is not None:
        admin(d.state_dir, "account", "create", account, "--balance", str(balance))
    key = admin(d.state_dir, "key", "create", account).stdout.strip()
    assert key.startswith("sk-") and len(key) == 67
    return {"Authorization": f"Bearer {key}"}


def balance(d, h):
    return d.get("/usage", headers=h).json()["balance"]["amount"]


@pytest.fixture
def keyd(money_sbxd):
    return money_sbxd("--auth", "api_key")


def test_calls_are_debited_and_recorded(keyd):
    d = keyd
    h = new_key(d, "alice", "$0.02")
    assert d.post("/sandbox/create", {}).status_code == 401  # no key
    r = d.post("/sandbox/create", {"timeout": 60}, headers=h)
    assert r.status_code == 200, r.text
    sid = r.json()["sandbox_id"]
    d.created.append(sid)
    assert balance(d, h) == 10000
    r = d.post("/sandbox/exec", {"sandbox_id": sid, "command": "echo hi"}, headers=h)
    assert r.json()["stdout"] == "hi\n"
    # a command that fails is still a successful (charged) call
    assert d.post("/sandbox/exec", {"sandbox_id": sid, "command": "exit 3"}, headers=h).json()["exit_code"] == 3
    assert d.post("/sandbox/status", {"sandbox_id": sid}, headers=h).status_code == 200
    assert balance(d, h) == 7000
    # failures that are not the caller's doing are refunded; so are 404s
    r = d.post("/sandbox/status", {"sandbox_id": "sb_00000000000000000000"}, headers=h)
    assert r.status_code == 404
    # invalid requests are refused before any charge
    assert d.post("/sandbox/create", {"timeout": -1}, headers=h).status_code == 400
    assert d.post("/sandbox/create", {"gpu": "h100"}, headers=h).status_code == 400
    u = d.get("/usage", headers=h).json()
    assert u["owner"] == "acct:alice"
    assert u["balance"]["amount"] == 7000
    assert u["total_charged"]["amount"] == 13000 and u["charges_count"] == 4
    ops = [(c["op"], c["state"], c["amount"]["amount"]) for c in reversed(u["charges"])]
    assert ops == [("create", "charged", 10000), ("exec", "charged", 1000), ("exec", "charged", 1000),
                   ("status", "charged", 1000), ("status", "refunded", 1000)]
    assert all(c["sandbox_id"] == sid for c in u["charges"][1:])
    out = admin(d.state_dir, "account", "show", "alice").stdout
    assert "balance 7000" in out and "charged 13000" in out


def test_insufficient_balance_is_402_with_the_price(keyd):
    d = keyd
    h = new_key(d, "bob", 9999)
    r = d.post("/sandbox/create", {}, headers=h)
    assert r.status_code == 402
    e = r.json()["error"]
    assert e["code"] == "insufficient_funds"
    assert e["price"] == {"amount": 10000, "usd": "0.01"} and e["balance"] == 9999
    # long sandboxes are billed up front for the whole time: 2 h of CPU = $0.20
    admin(d.state_dir, "account", "topup", "bob", "$0.10")
    r = d.post("/sandbox/create", {"timeout": 7200}, headers=h)
    assert r.status_code == 402 and r.json()["error"]["price"]["amount"] == 200000
    assert balance(d, h) == 109999


def test_fifty_concurrent_calls_on_a_balance_for_ten(keyd):
    d = keyd
    h = new_key(d, "carol", 10000)
    sid = d.post("/sandbox/create", {"timeout": 120}, headers=h).json()["sandbox_id"]
    d.created.append(sid)
    assert balance(d, h) == 0
    admin(d.state_dir, "account", "topup", "carol", "10000")  # ten status calls
    codes = []
    lock = threading.Lock()
    start = threading.Barrier(50)

    def call():
        start.wait()
        r = requests.post(d.url + "/v1/sandbox/status", json={"sandbox_id": sid}, headers=h, timeout=60)
        with lock:
            codes.append(r.status_code)

    ts = [threading.Thread(target=call) for _ in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(codes) == [200] * 10 + [402] * 40
    u = d.get("/usage", headers=h).json()
    assert u["balance"]["amount"] == 0
    assert u["charges_count"] == 11 and u["total_charged"]["amount"] == 20000


def test_revoked_key_is_refused(keyd):
    d = keyd
    h = new_key(d, "dave", 50000)
    assert d.get("/usage", headers=h).status_code == 200
    key_id = h["Authorization"][len("Bearer sk-"):][:16]
    listed = admin(d.state_dir, "key", "list", "dave").stdout
    assert key_id in listed and "active" in listed
    assert "revoked" in admin(d.state_dir, "key", "revoke", key_id).stdout
    for r in [d.get("/usage", headers=h), d.post("/sandbox/create", {}, headers=h)]:
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    # a forged key with a known id but another secret is refused the same way
    forged = {"Authorization": "Bearer sk-" + key_id + "0" * 48}
    assert d.get("/usage", headers=forged).status_code == 401
    assert balance(d, new_key(d, "dave")) == 50000


def test_ownership_between_accounts(keyd):
    d = keyd
    ha = new_key(d, "erin", "$1")
    hb = new_key(d, "frank", "$1")
    sid = d.post("/sandbox/create", {"timeout": 120}, headers=ha).json()["sandbox_id"]
    d.created.append(sid)
    for path, body in [("/sandbox/exec", {"sandbox_id": sid, "command": "id"}),
                       ("/sandbox/status", {"sandbox_id": sid}),
                       ("/sandbox/terminate", {"sandbox_id": sid})]:
        r = d.post(path, body, headers=hb)
        assert r.status_code == 404 and r.json()["error"]["code"] == "sandbox_not_found", r.text
    assert d.get("/sandbox/list", headers=hb).json()["count"] == 0
    assert [s["sandbox_id"] for s in d.get("/sandbox/list", headers=ha).json()["sandboxes"]] == [sid]
    # a list cursor is the caller's own sandbox or refused, like an unknown one
    assert d.get(f"/sandbox/list?limit=5&after={sid}", headers=ha).json()["count"] == 0
    r = d.get(f"/sandbox/list?limit=5&after={sid}", headers=hb)
    assert r.status_code == 400 and "after" in r.json()["error"]["message"], r.text
    assert balance(d, hb) == 1000000  # nothing charged for somebody else's sandbox
    assert d.post("/sandbox/terminate", {"sandbox_id": sid}, headers=ha).status_code == 200


def test_kill9_during_a_paid_exec_neither_loses_nor_doubles_a_charge(keyd):
    d = keyd
    h = new_key(d, "gina", 12000)
    sid = d.post("/sandbox/create", {"timeout": 300}, headers=h).json()["sandbox_id"]
    d.created.append(sid)
    result = {}

    def slow_exec():
        try:
            result["r"] = requests.post(d.url + "/v1/sandbox/exec",
                                        json={"sandbox_id": sid, "command": "sleep 60"},
                                        headers=h, timeout=120)
        except requests.RequestException as e:
            result["e"] = e

    t = threading.Thread(target=slow_exec)
    t.start()
    db = str(d.state_dir / "sbx.db")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the exec's charge is reserved: the crash point
        q = subprocess.run(["sqlite3", db, "SELECT count(*) FROM charges WHERE state='reserved'"],
                           capture_output=True, text=True).stdout.strip()
        if q == "1":
            break
        time.sleep(0.05)
    assert q == "1"
    assert balance(d, h) == 1000
    d.kill9()
    t.join()
    assert "e" in result  # the caller never got an answer
    d.start()
    # the interrupted exec is refunded, the create stays charged, each exactly once
    u = d.get("/usage", headers=h).json()
    assert u["balance"]["amount"] == 2000
    states = [(c["op"], c["state"]) for c in reversed(u["charges"])]
    assert states == [("create", "charged"), ("exec", "refunded")]
    # the sandbox was re-adopted and is still the account's
    assert d.post("/sandbox/status", {"sandbox_id": sid}, headers=h).json()["status"] == "running"
    # restarting again changes nothing
    d.stop()
    d.start()
    assert d.get("/usage", headers=h).json()["balance"]["amount"] == 1000


def test_endpoints_inside_a_sandbox_are_the_owners_only(keyd):
    d = keyd
    ha = new_key(d, "hana", "$1")
    hb = new_key(d, "ivan", "$1")
    sid = d.post("/sandbox/create", {"timeout": 120}, headers=ha).json()["sandbox_id"]
    d.created.append(sid)
    w = {"sandbox_id": sid, "path": "/tmp/secret", "content": "mine"}
    assert d.post("/sandbox/files/write", w, headers=ha).status_code == 200
    # somebody else: not found, by body sandbox_id or by path; nobody: 401
    r = d.post("/sandbox/files/read", {"sandbox_id": sid, "path": "/tmp/secret"}, headers=hb)
    assert r.status_code == 404 and r.json()["error"]["code"] == "sandbox_not_found"
    assert d.post("/sandbox/files/write", {**w, "content": "theirs"}, headers=hb).status_code == 404
    r = requests.get(f"{d.url}/v1/sandbox/{sid}/files", params={"path": "/tmp/secret"}, headers=hb)
    assert r.status_code == 404
    assert d.post("/sandbox/files/read", {"sandbox_id": sid, "path": "/tmp/secret"}).status_code == 401
    # a raw upload is refused before any byte reaches the sandbox
    r = requests.put(f"{d.url}/v1/sandbox/{sid}/files", params={"path": "/tmp/planted"},
                     data=b"x" * 100000, headers=hb)
    assert r.status_code == 404
    r = d.post("/sandbox/exec", {"sandbox_id": sid, "command": "ls /tmp"}, headers=ha)
    assert "planted" not in r.json()["stdout"]
    r = requests.put(f"{d.url}/v1/sandbox/{sid}/files", params={"path": "/tmp/mine"}, data=b"ok",
                     headers=ha)
    assert r.status_code == 200, r.text
    r = d.post("/sandbox/files/read", {"sandbox_id": sid, "path": "/tmp/secret"}, headers=ha)
    assert r.status_code == 200 and "mine" in r.text
    # endpoints without an owner model are refused while auth is on (fail closed)
    assert d.get("/image/list", headers=ha).status_code == 403
    assert d.post("/sandbox/fork", {"sandbox_id": sid, "count": 1}, headers=ha).status_code == 403
    # and nothing of this was charged beyond the create
    assert balance(d, ha) == 989000 and balance(d, hb) == 1000000


def test_sbx_client_sends_the_key_from_the_environment(keyd):
    from conftest import SBX
    d = keyd
    h = new_key(d, "judy", "$1")
    env = {"PATH": "/usr/bin:/bin", "SBX_URL": d.url}
    r = subprocess.run([str(SBX), "create", "--timeout", "60"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "unauthorized" in (r.stdout + r.stderr)
    env["SBX_API_KEY"] = h["Authorization"][len("Bearer "):]
    r = subprocess.run([str(SBX), "create", "--timeout", "60"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    d.created.append(sid)
    r = subprocess.run([str(SBX), "exec", sid, "--", "echo", "ok"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "ok\n"
    assert balance(d, h) == 1000000 - 10000 - 1000


def test_running_sandboxes_per_owner_are_bounded(money_sbxd, tmp_path):
    """max_sandboxes_per_owner: with auth on, one paying caller cannot take every place of
    the host. Past the bound a create is 429 too_many_sandboxes and refunded; other owners
    are not affected. Concurrent creates get exactly the places left (the count and the
    row are one step), and one refused ends no warm pool member (the pool's creates are
    claims here: --pool-size 4)."""
    import concurrent.futures
    import json
    cfg = tmp_path / "sbxd.json"
    cfg.write_text(json.dumps({"max_sandboxes_per_owner": 2}))
    d = money_sbxd("--auth", "api_key", "--config", str(cfg), "--pool-size", "4")
    ha, hb = new_key(d, "ann", "$1"), new_key(d, "ben", "$1")

    def create(h, session=requests):
        r = session.post(d.url + "/v1/sandbox/create", json={"timeout": 120}, headers=h,
                         timeout=120)
        if r.status_code == 200:
            d.created.append(r.json()["sandbox_id"])
        return r

    def race(n):
        """n creates of ann's let go at once; their answers."""
        sessions = [requests.Session() for _ in range(n)]
        gate = threading.Barrier(n)

        def one(sess):
            gate.wait()
            return create(ha, sess)
        with concurrent.futures.ThreadPoolExecutor(n) as ex:
            return list(ex.map(one, sessions))

    def granted(got):
        refused = [r for r in got if r.status_code != 200]
        assert all(r.status_code == 429 and r.json()["error"]["code"] == "too_many_sandboxes"
                   for r in refused), [r.text for r in refused]
        return [r.json()["sandbox_id"] for r in got if r.status_code == 200]

    ok = granted(race(6))
    assert len(ok) == 2, ok
    for _ in range(8):  # the last place, raced for again and again
        assert d.post("/sandbox/terminate", {"sandbox_id": ok.pop()}, headers=ha).status_code == 200
        got = granted(race(12))
        assert len(got) == 1, got
        ok += got
    assert "pool claim failed" not in d.log_path.read_text(errors="replace")
    before = balance(d, ha)
    r = create(ha)
    assert r.status_code == 429 and "max_sandboxes_per_owner" in r.json()["error"]["message"]
    assert balance(d, ha) == before  # refunded
    assert create(hb).status_code == 200  # another owner still creates
    assert d.post("/sandbox/terminate", {"sandbox_id": ok[0]}, headers=ha).status_code == 200
    assert create(ha).status_code == 200
    running = d.get("/sandbox/list?status=running", headers=ha).json()
    assert len(running["sandboxes"]) == 2, running


def test_requests_per_owner_are_bounded(money_sbxd, tmp_path):
    """max_requests_per_owner: with auth on, one owner has at most that many requests
    being answered at once (long execs, streams, unread answers), so one paying caller
    cannot hold every connection slot. Past it: 429 too_many_requests with Retry-After,
    refunded; other owners go on; the owner's next request after they end goes through."""
    import concurrent.futures
    import json
    cfg = tmp_path / "sbxd.json"
    cfg.write_text(json.dumps({"max_requests_per_owner": 2}))
    d = money_sbxd("--auth", "api_key", "--config", str(cfg))
    ha, hb = new_key(d, "amy", "$1"), new_key(d, "bob", "$1")
    ids = {}
    for who, h in (("a", ha), ("b", hb)):
        r = d.post("/sandbox/create", {"timeout": 120}, headers=h)
        assert r.status_code == 200, r.text
        ids[who] = r.json()["sandbox_id"]
        d.created.append(ids[who])
    slow = {"sandbox_id": ids["a"], "command": "sleep 3"}
    before = balance(d, ha)
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        busy = [ex.submit(d.post, "/sandbox/exec", slow, headers=ha) for _ in range(2)]
        time.sleep(1)  # both are running
        r = d.post("/sandbox/status", {"sandbox_id": ids["a"]}, headers=ha)
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_requests", r.text
        assert "max_requests_per_owner" in r.json()["error"]["message"] and r.headers.get("Retry-After")
        r = d.post("/sandbox/status", {"sandbox_id": ids["b"]}, headers=hb)
        assert r.status_code == 200, r.text
        assert all(f.result().status_code == 200 for f in busy)
    assert balance(d, ha) == before - 2000  # the two execs; the refused status refunded
    r = d.post("/sandbox/status", {"sandbox_id": ids["a"]}, headers=ha)
    assert r.status_code == 200, r.text
