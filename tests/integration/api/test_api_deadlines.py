"""One supervisor timer for every sandbox lifetime (src/server/deadlines.c): sandboxes with
different lifetimes, created in mixed order, each end at their own time and in the order of
their deadlines; a long-lived one is not touched by the others' expiry."""
import calendar
import time

from .test_api_lifetimes import wait_status


def rfc3339(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def test_many_lifetimes_expire_in_deadline_order(sbxd):
    timeouts = [4, 1, 3, 1, 2, 4, 2]
    short = [sbxd.create(timeout=t) for t in timeouts]
    keeper = sbxd.create(timeout=300)
    ends = [wait_status(sbxd, sid) for sid in short]
    for st in ends:
        assert st["status"] == "terminated" and st["reason"] == "timeout", st
        assert rfc3339(st["terminated_at"]) >= rfc3339(st["expires_at"]), st
    by_deadline = sorted(ends, key=lambda st: st["expires_at"])
    ended = [rfc3339(st["terminated_at"]) for st in by_deadline]
    assert ended == sorted(ended), by_deadline
    st = sbxd.post("/sandbox/status", {"sandbox_id": keeper}).json()
    assert st["status"] == "running", st
    assert sbxd.exec(keeper, "echo alive").json()["stdout"] == "alive\n"
    assert sbxd.post("/sandbox/terminate", {"sandbox_id": keeper}).status_code == 200


def test_deadline_of_a_terminated_sandbox_is_dropped(sbxd):
    # The earliest deadline belongs to a sandbox that is gone before it comes: the timer
    # fires for nothing and the next deadline still ends its sandbox.
    early = sbxd.create(timeout=1)
    later = sbxd.create(timeout=2)
    assert sbxd.post("/sandbox/terminate", {"sandbox_id": early}).status_code == 200
    st = wait_status(sbxd, later)
    assert st["status"] == "terminated" and st["reason"] == "timeout", st
    st = sbxd.post("/sandbox/status", {"sandbox_id": early}).json()
    assert st["reason"] != "timeout", st
