"""The warm pool: a create claims a ready sandbox that was never used, it works like a cold
one, the pool refills, members are nobody's (not listed, not counted, not billed), and they
never outlive sbxd (stop, kill -9 and restart)."""
import calendar
import time

from .conftest import leftovers, metric, pool_ids, wait_clean, wait_pool


def rfc3339(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def test_pool_hit_gives_a_working_fresh_sandbox(psbxd):
    d = psbxd("--pool-size", "2")
    wait_pool(d, 2)
    members = pool_ids(d)
    assert len(members) == 2
    time.sleep(1.1)  # the members are older than the claim by at least a second
    before = int(time.time())
    r = d.post("/sandbox/create", {"timeout": 120, "env": {"GREETING": "hi"}, "workdir": "/tmp"})
    assert r.status_code == 200, r.text
    info = r.json()
    sid = info["sandbox_id"]
    d.created.append(sid)
    assert sid in members, "the create did not come from the pool"
    assert metric(d, "sbx_pool_hits_total") == 1
    # Its lifetime starts at the claim.
    assert rfc3339(info["created_at"]) >= before
    assert rfc3339(info["expires_at"]) - rfc3339(info["created_at"]) == 120
    assert info["commands_executed"] == 0
    assert info["resources"]["pids"] > 0 and info["resources"]["disk_mb"] > 0
    # Nothing ran in it before: empty /tmp (the workdir), no process but sbx-init and ours,
    # the request's env and workdir apply, same hostname and user as a cold sandbox.
    r = d.exec(sid, ["sh", "-c", 'pwd; echo "$GREETING"; ls -A /tmp | wc -l; '
                     'for p in /proc/[0-9]*; do cat $p/comm; done | sort | tr "\\n" " "; echo; '
                     'hostname; id -u'])
    assert r.status_code == 200, r.text
    out = r.json()["stdout"].splitlines()
    assert out[0] == "/tmp"
    assert out[1] == "hi"
    assert out[2] == "0"
    procs = out[3].split()
    assert procs.count("sbx-init") == 1, procs
    assert set(procs) <= {"sbx-init", "sh", "sort", "tr", "cat"}, procs
    cold = d.create(memory=512)  # not a pool key: cold
    assert cold not in members
    rc = d.exec(cold, ["sh", "-c", "hostname; id -u"]).json()["stdout"].splitlines()
    assert out[4:6] == rc
    st = d.post("/sandbox/status", {"sandbox_id": sid}).json()
    assert st["commands_executed"] == 1 and st["status"] == "running"


def test_pool_refills_after_claims(psbxd):
    d = psbxd("--pool-size", "3")
    wait_pool(d, 3)
    first = pool_ids(d)
    got = [d.create() for _ in range(3)]
    assert got[0] == first[0] or got[0] in first  # oldest first
    assert metric(d, "sbx_pool_hits_total") == 3
    wait_pool(d, 3)
    again = set(pool_ids(d))
    assert len(again) == 3 and not again & set(got)
    for sid in got:
        assert d.exec(sid, ["true"]).status_code == 200


def test_pool_members_are_nobodys(psbxd):
    d = psbxd("--pool-size", "2")
    wait_pool(d, 2)
    members = pool_ids(d)
    assert d.get("/sandbox/list").json()["count"] == 0
    assert d.get("/health").json()["sandboxes_running"] == 0
    for sid in members:
        # Not reachable through the API before a create hands it out.
        r = d.exec(sid, ["true"])
        assert r.status_code == 404, r.text
        assert d.post("/sandbox/status", {"sandbox_id": sid}).status_code == 404
        assert d.post("/sandbox/terminate", {"sandbox_id": sid}).status_code == 404
    sid = d.create()
    listed = [s["sandbox_id"] for s in d.get("/sandbox/list").json()["sandboxes"]]
    assert listed == [sid]
    assert d.get("/health").json()["sandboxes_running"] == 1


def test_cold_create_at_capacity_evicts_a_member(psbxd):
    d = psbxd("--pool-size", "2", "--max-sandboxes", "2")
    wait_pool(d, 2)
    members = pool_ids(d)
    a = d.create(memory=512)  # cold: needs a member's slot
    b = d.create(memory=512)
    assert a not in members and b not in members
    r = d.post("/sandbox/create", {"memory": 512})
    assert r.status_code == 503, r.text
    assert wait_clean(d.state_dir, members) == []
    for sid in (a, b):
        assert d.exec(sid, ["true"]).status_code == 200


def test_pool_members_age_out(psbxd):
    d = psbxd("--pool-size", "1", "--pool-max-age", "1")
    wait_pool(d, 1)
    old = pool_ids(d)
    deadline = time.monotonic() + 30
    while set(pool_ids(d)) & set(old) or not pool_ids(d):
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.1)
    assert wait_clean(d.state_dir, old) == []
    wait_pool(d, 1)


def test_stop_and_crash_leave_no_pool_member(psbxd):
    d = psbxd("--pool-size", "2")
    wait_pool(d, 2)
    claimed = d.create()
    members = pool_ids(d)
    # Graceful stop: the caller's sandbox keeps running, the members are destroyed.
    assert d.stop() == 0
    assert wait_clean(d.state_dir, members) == []
    assert leftovers(d.state_dir, [claimed]) != []
    d.start()
    assert d.exec(claimed, ["true"]).status_code == 200
    wait_pool(d, 2)
    members = pool_ids(d)
    # kill -9: the members outlive sbxd; the next start destroys them, never adopts them.
    d.kill9()
    assert all(leftovers(d.state_dir, [m]) for m in members)
    d.start()
    assert wait_clean(d.state_dir, members) == []
    assert d.get("/sandbox/list").json()["count"] == 1
    assert d.exec(claimed, ["true"]).status_code == 200
    for m in members:
        assert d.post("/sandbox/status", {"sandbox_id": m}).status_code == 404
    wait_pool(d, 2)


def test_pool_off(psbxd):
    d = psbxd("--pool-size", "0")
    sid = d.create()
    assert d.exec(sid, ["true"]).status_code == 200
    assert metric(d, "sbx_pool_hits_total") == 0
    assert not (d.state_dir / "pool").exists() or pool_ids(d) == []


def test_concurrent_claims_evictions_and_refills(psbxd):
    """Claims, cold creates that evict, refills and terminates all at once: every create is
    answered 200 (a working sandbox) or 503, and nothing is left behind."""
    import threading
    d = psbxd("--pool-size", "4", "--max-sandboxes", "6")
    wait_pool(d, 4)
    seen, errors, lock = set(pool_ids(d)), [], threading.Lock()

    def worker(k):
        for i in range(8):
            body = {} if (k + i) % 3 else {"memory": 512}
            r = d.post("/sandbox/create", body)
            with lock:
                seen.update(pool_ids(d))
            if r.status_code == 503:
                continue
            if r.status_code != 200:
                errors.append(r.text)
                continue
            sid = r.json()["sandbox_id"]
            with lock:
                d.created.append(sid)
            e = d.exec(sid, ["sh", "-c", "ls -A /tmp | wc -l"])
            if e.status_code != 200 or e.json()["stdout"] != "0\n":
                errors.append(e.text)
            d.post("/sandbox/terminate", {"sandbox_id": sid})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert metric(d, "sbx_pool_hits_total") > 0
    wait_pool(d, 4)
    assert d.get("/health").json()["sandboxes_running"] == 0
    gone = seen - set(pool_ids(d))
    assert wait_clean(d.state_dir, list(gone)) == []
