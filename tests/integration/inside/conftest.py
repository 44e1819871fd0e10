"""Fixtures for the issue-6 tests (streaming, processes, files, watch): one sbxd for the
module set, built like the API suite's (tests/integration/api/conftest.py)."""
import pytest

from api.conftest import one_sbxd


@pytest.fixture(scope="session")
def sbxd(python_image):
    yield from one_sbxd()


@pytest.fixture
def sid(sbxd):
    """A fresh sandbox, terminated after the test."""
    s = sbxd.create(timeout=600)
    yield s
    sbxd.post("/sandbox/terminate", {"sandbox_id": s})
