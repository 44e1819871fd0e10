"""GET /metrics: Prometheus text under every prefix, counters that move with the calls,
histograms that add up; with authentication on, loopback clients only; pool members are
never charged or listed with auth on either."""
import socket

import pytest
import requests

from api.conftest import PREFIXES
from money.conftest import admin, finish_auth
from .conftest import metric, parse_metrics, pool_ids, wait_pool
from api.conftest import Sbxd, make_state_dir


def hist_ok(vals, name, **labels):
    want = frozenset(labels.items())
    buckets = sorted(((float("inf") if dict(l)["le"] == "+Inf" else float(dict(l)["le"])), v)
                     for (n, l), v in vals.items()
                     if n == name + "_bucket" and want <= l)
    assert buckets and buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets must be cumulative"
    count = [v for (n, l), v in vals.items() if n == name + "_count" and want == l]
    assert count == [buckets[-1][1]]
    return buckets[-1][1]


def test_metrics_text_and_counters(psbxd):
    d = psbxd("--pool-size", "1")
    wait_pool(d, 1)
    for p in PREFIXES:
        r = d.get("/metrics", prefix=p)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        vals, types = parse_metrics(r.text)
    assert types["sbx_execs_total"] == "counter"
    assert types["sbx_create_duration_seconds"] == "histogram"
    assert types["sbx_sandboxes"] == "gauge"
    assert hist_ok(vals, "sbx_create_duration_seconds", source="pool") == 0
    assert d.post("/metrics", {}).status_code == 405

    errs0 = metric(d, "sbx_errors_total", code="sandbox_not_found")
    pooled = d.create()                 # from the pool
    cold = d.create(memory=512)         # not a pool key
    wait_pool(d, 1)
    d.create()
    for sid in (pooled, cold):
        r = d.exec(sid, ["sh", "-c", "printf 12345; printf abc >&2"])
        assert r.status_code == 200
    assert d.exec("sb_00000000000000000000", ["true"]).status_code == 404
    vals, _ = parse_metrics(d.get("/metrics").text)
    assert vals[("sbx_pool_hits_total", frozenset())] == 2
    assert vals[("sbx_execs_total", frozenset())] == 2
    assert vals[("sbx_exec_output_bytes_total", frozenset())] == 16
    assert vals[("sbx_errors_total", frozenset({("code", "sandbox_not_found")}))] == errs0 + 1
    assert hist_ok(vals, "sbx_create_duration_seconds", source="pool") == 2
    assert hist_ok(vals, "sbx_create_duration_seconds", source="cold") == 1
    assert hist_ok(vals, "sbx_exec_duration_seconds") == 2
    assert vals[("sbx_sandboxes", frozenset({("state", "running")}))] == 3
    wait_pool(d, 1)
    assert metric(d, "sbx_sandboxes", state="pool_ready") == 1
    assert metric(d, "sbx_pool_size") == 1


def non_loopback_ip():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: picks the outgoing address
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


@pytest.fixture
def authd(python_image):
    d = Sbxd(make_state_dir(), ["--auth", "api_key", "--pool-size", "2",
                                "--listen", "0.0.0.0:0"])
    # bind every address so that a non-loopback client can be tried
    d.extra_args[-1] = f"0.0.0.0:{d.port}"
    d.start()
    yield d
    finish_auth(d)


def test_metrics_with_auth_loopback_only_and_pool_is_never_billed(authd):
    d = authd
    assert d.get("/metrics").status_code == 200  # loopback, no key needed
    ip = non_loopback_ip()
    if ip:
        r = requests.get(f"http://{ip}:{d.port}/v1/metrics", timeout=10)
        assert r.status_code == 403, r.text
    wait_pool(d, 2)
    members = pool_ids(d)
    admin(d.state_dir, "account", "create", "alice", "--balance", "$1")
    key = admin(d.state_dir, "key", "create", "alice").stdout.strip()
    h = {"Authorization": f"Bearer {key}"}
    u = d.get("/usage", headers=h).json()
    assert u["charges_count"] == 0
    assert d.get("/sandbox/list", headers=h).json()["count"] == 0
    r = d.post("/sandbox/create", {"timeout": 60}, headers=h)
    assert r.status_code == 200, r.text
    sid = r.json()["sandbox_id"]
    d.created.append(sid)
    assert sid in members
    u = d.get("/usage", headers=h).json()
    assert u["charges_count"] == 1 and u["charges"][0]["sandbox_id"] == sid
    assert [s["sandbox_id"] for s in d.get("/sandbox/list", headers=h).json()["sandboxes"]] == [sid]
    r = d.post("/sandbox/exec", {"sandbox_id": sid, "command": ["true"]}, headers=h)
    assert r.status_code == 200, r.text


def test_streamed_bytes_are_counted(psbxd):
    d = psbxd("--pool-size", "0")
    sid = d.create()
    before = metric(d, "sbx_streamed_bytes_total")
    r = d.post("/sandbox/exec", {"sandbox_id": sid, "command": ["sh", "-c", "head -c 100000 /dev/zero"],
                                 "stream": True})
    assert r.status_code == 200
    assert metric(d, "sbx_streamed_bytes_total") - before >= len(r.content) > 100000
