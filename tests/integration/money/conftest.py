"""Fixtures for the money tests (issue 4): sbxd with auth on, the official x402 client
(../shared/x402/client, installed once into a cache dir), a fake facilitator on loopback,
and helpers to sign payments and manage accounts with sbx-admin."""
import base64
import json
import os
import pathlib
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import BUILD, ROOT  # the parent (tests/integration) conftest
from api.conftest import finish, sbxd_factory

SBX_ADMIN = BUILD / "sbx-admin"
PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
# Public anvil/hardhat test keys: everyone knows them, they never hold real funds.
KEYS = {
    "a": ("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
          "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
    "b": ("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
          "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"),
    "c": ("0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
          "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
    "poor": ("0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
             "0x90F79bf6EB2c4f870365E785982E1f101E93b906"),
}
CLIENT_CACHE = pathlib.Path(os.environ.get("SBX_X402_CLIENT_CACHE", "/var/cache/sbx-x402"))
CLIENT_SRC = [pathlib.Path(os.environ["SBX_X402_CLIENT_SRC"])] if "SBX_X402_CLIENT_SRC" in os.environ \
    else [ROOT.parent / "shared/x402/client", pathlib.Path("/work/shared/x402/client")]
HERE = pathlib.Path(__file__).resolve().parent


def b64json(s):
    return json.loads(base64.b64decode(s))


@pytest.fixture(scope="session")
def x402_client():
    """The official client, installed once: copied to a cache dir, npm install there."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: cannot run the official x402 client")
    if not (CLIENT_CACHE / "node_modules/@x402/fetch").exists():
        src = next((p for p in CLIENT_SRC if (p / "pay.mjs").exists()), None)
        if src is None:
            pytest.skip(f"x402 client sources not found in {CLIENT_SRC}")
        CLIENT_CACHE.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file():
                shutil.copy(f, CLIENT_CACHE / f.name)
                os.chmod(CLIENT_CACHE / f.name, 0o644)
        r = subprocess.run(["npm", "install", "--no-package-lock"], cwd=CLIENT_CACHE,
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            pytest.skip(f"npm install of the x402 client failed: {r.stderr[-500:]}")
    shutil.copy(HERE / "sign.mjs", CLIENT_CACHE / "sign.mjs")
    return CLIENT_CACHE


def pay(client_dir, url, body=None, who="a", method="POST", headers=()):
    """Pay for one request with the official client (pay.mjs); its --json result."""
    args = ["node", str(client_dir / "pay.mjs"), url, json.dumps(body if body is not None else {}),
            KEYS[who][0], "--method", method, "--json", "--quiet"]
    for h in headers:
        args += ["--header", h]
    r = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert r.returncode in (0, 1), f"pay.mjs failed ({r.returncode}): {r.stderr[-2000:]}"
    return json.loads(r.stdout)


def sign(client_dir, **kw):
    """A payment header signed with viem (see sign.mjs); kw: who, version, value, to, ..."""
    now = int(time.time())
    who = kw.pop("who", "a")
    args = {"key": KEYS[who][0], "version": 2, "network": "base", "to": PAY_TO,
            "validAfter": now - 600, "validBefore": now + 300}
    args.update(kw)
    r = subprocess.run(["node", str(client_dir / "sign.mjs"), json.dumps(args)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class Facilitator:
    """A fake x402 facilitator: POST /verify and /settle record the body and answer as a
    real one would; payers in `fail_verify` are invalid at /verify, payers in `fail` are
    refused at /settle (insufficient_funds, as on-chain)."""

    def __init__(self):
        self.settles = []
        self.verifies = []
        self.fail = set()
        self.fail_verify = set()
        self.hold = set()  # payers whose /settle waits for `release` (crash tests)
        self.release = threading.Event()
        self.lock = threading.Lock()
        fac = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = body["paymentPayload"]["payload"]["authorization"]
                if self.path == "/verify":
                    with fac.lock:
                        fac.verifies.append(body)
                    bad = auth["from"].lower() in fac.fail_verify
                    out = {"isValid": not bad, "payer": auth["from"]}
                    if bad:
                        out["invalidReason"] = "invalid_exact_evm_insufficient_balance"
                    return self._answer(out)
                with fac.lock:
                    fac.settles.append({"path": self.path, "body": body})
                    n = len(fac.settles)
                net = body["paymentRequirements"]["network"]
                if auth["from"].lower() in fac.hold:
                    fac.release.wait(60)
                if auth["from"].lower() in fac.fail:
                    out = {"success": False, "errorReason": "insufficient_funds", "transaction": "",
                           "network": net, "payer": auth["from"]}
                else:
                    out = {"success": True, "transaction": "0x" + f"{n:064x}", "network": net,
                           "payer": auth["from"]}
                self._answer(out)

            def _answer(self, out):
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.settles)

    def close(self):
        self.release.set()
        self.httpd.shutdown()


class StripV2Proxy:
    """Forwards to sbxd but drops PAYMENT-REQUIRED from answers: the official client then
    reads the v1 body and pays with X-PAYMENT (it prefers the v2 header when present)."""

    def __init__(self, target):
        self.target = target

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _fwd(self):
                n = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(n) if n else None
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                r = requests.request(self.command, target + self.path, data=data, headers=hdrs, timeout=120)
                body = r.content
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() in ("payment-required", "content-length", "transfer-encoding", "connection"):
                        continue
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _fwd

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def admin(state_dir, *args, check=True):
    r = subprocess.run([str(SBX_ADMIN), "--state-dir", str(state_dir), *args],
                       capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def finish_auth(d):
    """Cleanup of an sbxd with auth on: restart it with auth off (everything is "local"
    then) and let the API suite's finish terminate what is left and check for leftovers."""
    d.created += [l for l in subprocess.run(
        ["sqlite3", str(d.state_dir / "sbx.db"), "SELECT id FROM sandboxes"],
        capture_output=True, text=True).stdout.split() if l not in d.created]
    if d.proc and d.proc.poll() is None:
        d.stop()
    d.extra_args = []
    d.start()
    finish(d)


@pytest.fixture
def facilitator():
    f = Facilitator()
    yield f
    f.close()


@pytest.fixture
def money_sbxd(python_image):
    """Start sbxd with the given money flags; torn down with finish_auth."""
    yield from sbxd_factory(finish_auth)


@pytest.fixture
def x402d(money_sbxd, facilitator):
    """sbxd with x402 on, settling through the fake facilitator (d.facilitator)."""
    d = money_sbxd("--auth", "x402", "--pay-to", PAY_TO, "--facilitator", facilitator.url)
    d.facilitator = facilitator
    return d
