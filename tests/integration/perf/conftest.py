"""Fixtures for the warm pool and metrics tests: real sbxd daemons (the API suite's helper),
each with its own state directory and pool options."""
import pathlib
import re
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from api.conftest import leftovers, sbxd_factory, wait_clean  # noqa: E402,F401

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format 0.0.4: {(name, frozenset(labels)): value}; fails on any line
    that is neither a comment (# HELP / # TYPE) nor a sample."""
    out, types = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            assert parts[1] in ("HELP", "TYPE"), line
            if parts[1] == "TYPE":
                assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), line
                types[parts[2]] = parts[3]
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        key = (m.group(1), labels)
        assert key not in out, f"duplicate sample {line!r}"
        out[key] = float(m.group(4))
    return out, types


def metric(d, name, **labels):
    r = d.get("/metrics")
    assert r.status_code == 200, r.text
    vals, _ = parse_metrics(r.text)
    want = frozenset(labels.items())
    got = [v for (n, l), v in vals.items() if n == name and want <= l]
    assert got, f"no sample {name}{labels}"
    return sum(got)


def pool_ready(d):
    return metric(d, "sbx_pool_ready")


def wait_pool(d, n, seconds=60):
    """Wait until n members are ready (the refill runs in the background)."""
    deadline = time.monotonic() + seconds
    while pool_ready(d) < n:
        assert time.monotonic() < deadline, "pool did not fill: " + d.log()
        time.sleep(0.05)


def pool_ids(d):
    return sorted(p.name for p in (d.state_dir / "pool").iterdir())


@pytest.fixture
def psbxd(python_image):
    """Start private sbxd daemons with the given arguments; each is checked for leftovers
    (its own sandboxes and every pool member it ever had) when the test ends."""
    yield from sbxd_factory()
