"""Shared fixtures for the integration tests: real binaries, real sandboxes, real kernel.

Tests run as root (sandboxes need it). The state directory keeps the built images between
runs; set SBX_TEST_STATE_DIR to use another one."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
SBX = BUILD / "sbx"
SBXD = BUILD / "sbxd"
SBX_INIT = BUILD / "sbx-init"
PROBE = BUILD / "sbx-probe"
STATE_DIR = pathlib.Path(os.environ.get("SBX_TEST_STATE_DIR", "/var/lib/sbx-test"))


def sbx_env(**extra):
    env = dict(os.environ)
    env["SBX_STATE_DIR"] = str(STATE_DIR)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def state_dir():
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (sandboxes use namespaces and cgroups)")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    return STATE_DIR


@pytest.fixture(scope="session")
def python_image(state_dir):
    """Make sure the default image is built once, before timing-sensitive tests."""
    r = subprocess.run([str(SBX), "run", "--", "/bin/true"], env=sbx_env(),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    return "python:3.11"
