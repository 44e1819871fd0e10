"""A pool member's deadline is its recycle time until a create claims it; the claim moves
it to the caller's lifetime (one timer for all sandboxes: src/server/deadlines.c)."""
import time

from .conftest import metric, pool_ids, wait_pool


def wait_for(cond, what, d, seconds=60):
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, what + ": " + d.log()
        time.sleep(0.05)


def test_claim_replaces_the_recycle_time_by_the_lifetime(psbxd):
    d = psbxd("--pool-size", "1", "--pool-max-age", "1")
    wait_pool(d, 1)
    long = d.create(timeout=300)
    assert metric(d, "sbx_pool_hits_total") == 1, "the create did not come from the pool"
    # A member made after the claim ages out: the claimed one's recycle time is past too.
    wait_for(lambda: pool_ids(d), "no new member", d)
    later = pool_ids(d)
    wait_for(lambda: not set(pool_ids(d)) & set(later), "member did not age out", d)
    st = d.post("/sandbox/status", {"sandbox_id": long}).json()
    assert st["status"] == "running", st
    assert d.exec(long, ["echo", "alive"]).json()["stdout"] == "alive\n"
    # A short lifetime given by a claim ends the sandbox, as a timeout.
    wait_pool(d, 1)
    hits = metric(d, "sbx_pool_hits_total")
    short = d.create(timeout=1)
    assert metric(d, "sbx_pool_hits_total") == hits + 1
    deadline = time.monotonic() + 60
    while True:
        st = d.post("/sandbox/status", {"sandbox_id": short}).json()
        if st["status"] == "terminated" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert st["status"] == "terminated" and st["reason"] == "timeout", st
