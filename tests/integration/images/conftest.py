"""Fixtures for the image, snapshot and volume tests: a real sbxd (the API suite's helper)
with its own state directory; volumes are deleted before it goes."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from api.conftest import Sbxd, finish, make_state_dir  # noqa: E402


def cleanup_volumes(d):
    r = d.get("/volume/list")
    if r.status_code == 200:
        for v in r.json()["volumes"]:
            d.post("/volume/delete", {"name": v["name"]})


@pytest.fixture(scope="module")
def isbxd(python_image):
    d = Sbxd(make_state_dir()).start()
    yield d
    try:
        if d.proc.poll() is None:
            d.terminate_all()
            cleanup_volumes(d)
    finally:
        finish(d)
