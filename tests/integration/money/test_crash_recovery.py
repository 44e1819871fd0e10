"""kill -9 of sbxd at points the other restart tests do not reach, with API keys on: the
ledger after the restart must charge what ran, exactly once, and refund what did not."""
import os
import signal
import subprocess
import threading
import time

import pytest
import requests

from .conftest import admin
from .test_api_keys import balance, new_key


@pytest.fixture
def keyd(money_sbxd):
    # no warm pool: a create is cold, so it goes through a spawner
    return money_sbxd("--auth", "api_key", "--pool-size", "0")


def sql(d, q):
    return subprocess.run(["sqlite3", str(d.state_dir / "sbx.db"), q],
                          capture_output=True, text=True).stdout.split()


def spawners(d):
    out = subprocess.run(["pgrep", "-P", str(d.proc.pid), "-x", "sbx-spawner"],
                         capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def test_create_cut_before_its_spawn_is_refunded_even_once_expired(keyd):
    """sbxd dies after a create recorded its sandbox and reserved its price, before the
    sandbox was spawned, and stays down past the sandbox's lifetime. The sandbox never
    existed: its create must be refunded, not charged as a sandbox that timed out."""
    d = keyd
    h = new_key(d, "kim", 30000)
    sps = spawners(d)
    assert sps, "sbxd started no sbx-spawner"
    # The spawners cannot answer: the create waits in its spawn, its row and charge in.
    for p in sps:
        os.kill(p, signal.SIGSTOP)
    result = {}

    def create():
        try:
            result["r"] = requests.post(d.url + "/v1/sandbox/create", json={"timeout": 2},
                                        headers=h, timeout=60)
        except requests.RequestException as e:
            result["e"] = e

    t = threading.Thread(target=create)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while sql(d, "SELECT state FROM charges") != ["reserved"] or not sql(d, "SELECT id FROM sandboxes"):
            assert time.monotonic() < deadline, "the create did not reach its spawn"
            time.sleep(0.05)
        sid = sql(d, "SELECT id FROM sandboxes")[0]
        d.created.append(sid)
        assert not (d.state_dir / "run" / sid).exists()
        d.kill9()
    finally:
        for p in sps:  # they die with sbxd (PDEATHSIG); let them take the signal
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass
    t.join()
    assert "e" in result  # the caller never got an answer
    time.sleep(3)  # the 2 s lifetime ends while no sbxd runs
    d.start()
    u = d.get("/usage", headers=h).json()
    assert [(c["op"], c["state"]) for c in u["charges"]] == [("create", "refunded")]
    assert balance(d, h) == 30000
    st = d.post("/sandbox/status", {"sandbox_id": sid}, headers=h).json()
    assert st["status"] == "terminated" and st["reason"] != "timeout", st
    assert not (d.state_dir / "run" / sid).exists()
    # sbxd serves creates again, charged once each
    r = d.post("/sandbox/create", {"timeout": 60}, headers=h)
    assert r.status_code == 200, r.text
    d.created.append(r.json()["sandbox_id"])
    assert balance(d, h) == 19000
    assert "balance 19000" in admin(d.state_dir, "account", "show", "kim").stdout


def test_expired_while_down_is_still_charged_when_it_ran(keyd):
    """The other side: a create that spawned its sandbox, cut before its answer, whose
    lifetime ended while sbxd was down, ran: charged (docs/payments.md), reason timeout."""
    d = keyd
    h = new_key(d, "lee", 30000)
    sid = d.post("/sandbox/create", {"timeout": 2}, headers=h).json()["sandbox_id"]
    d.created.append(sid)
    d.kill9()
    # as if sbxd had died between the spawn and the answer: the charge still reserved
    seq = sql(d, f"SELECT charge_ref FROM sandboxes WHERE id = '{sid}'")[0]
    subprocess.run(["sqlite3", str(d.state_dir / "sbx.db"),
                    f"UPDATE charges SET state = 'reserved' WHERE seq = {seq}"], check=True)
    time.sleep(3)
    d.start()
    st = d.post("/sandbox/status", {"sandbox_id": sid}, headers=h).json()
    assert st["status"] == "terminated" and st["reason"] == "timeout", st
    u = d.get("/usage", headers=h).json()
    assert [(c["op"], c["state"]) for c in u["charges"]] == [("status", "charged"),
                                                             ("create", "charged")]
    assert balance(d, h) == 19000


def test_two_processes_creating_the_database_at_once(tmp_path):
    """sbx admin (or sbx run) and sbxd may open a new state dir's database at the same
    time. Each read the schema version before taking the write lock, so the second to
    get it ran the first migration again and failed ("table sandboxes already exists")."""
    import sqlite3
    from .conftest import SBX_ADMIN
    db = tmp_path / "sbx.db"
    hold = sqlite3.connect(db, isolation_level=None)
    hold.execute("PRAGMA journal_mode = WAL")
    hold.execute("BEGIN IMMEDIATE")  # both openers get as far as the migration and wait
    procs = [subprocess.Popen([str(SBX_ADMIN), "--state-dir", str(tmp_path), "account", "create",
                               name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("one", "two")]
    time.sleep(1)  # well within their 5 s busy timeout
    hold.execute("ROLLBACK")
    hold.close()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    out = admin(tmp_path, "account", "show", "two").stdout
    assert "balance 0" in out
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT count(*) FROM accounts").fetchone()[0] == 2
