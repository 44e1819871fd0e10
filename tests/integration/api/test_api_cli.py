"""The sbx client commands against a real sbxd: create, exec, status, ls, rm."""
import json
import os
import subprocess

from .conftest import SBX


def sbx(d, *args, stdin=None, url_flag=False):
    env = dict(os.environ)
    env.pop("SBX_URL", None)
    if url_flag:
        args = (args[0], "--url", d.url, *args[1:])
    else:
        env["SBX_URL"] = d.url
    return subprocess.run([str(SBX), *args], input=stdin, capture_output=True, env=env,
                          timeout=120)


def test_cli_lifecycle(sbxd):
    r = sbx(sbxd, "create", "--timeout", "120", "--env", "WHO=cli")
    assert r.returncode == 0, r.stderr
    sid = r.stdout.decode().strip()
    sbxd.created.append(sid)
    assert sid.startswith("sb_")

    r = sbx(sbxd, "exec", sid, "--", "sh", "-c", "echo $WHO; echo oops >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == b"cli\n" and r.stderr == b"oops\n"
    # CMD's own options are CMD's.
    r = sbx(sbxd, "exec", sid, "--", "python3", "--version")
    assert r.returncode == 0 and b"Python 3.11" in r.stdout + r.stderr
    # Exact bytes come back, even when they are not UTF-8.
    r = sbx(sbxd, "exec", sid, "--", "python3", "-c",
            "import sys; sys.stdout.buffer.write(bytes(range(256)))")
    assert r.returncode == 0 and r.stdout == bytes(range(256))
    r = sbx(sbxd, "exec", "-i", sid, "--", "wc", "-c", stdin=b"12345")
    assert r.stdout.strip() == b"5"
    r = sbx(sbxd, "exec", "--shell", sid, "--", "echo", "a", "&&", "echo", "b", url_flag=True)
    assert r.stdout == b"a\nb\n"

    r = sbx(sbxd, "exec", "--json", sid, "--", "echo", "hi")
    body = json.loads(r.stdout)
    assert body["stdout"] == "hi\n" and body["exit_code"] == 0

    r = sbx(sbxd, "status", sid)
    assert r.returncode == 0 and b"running" in r.stdout
    r = sbx(sbxd, "status", "--json", sid)
    assert json.loads(r.stdout)["commands_executed"] == 6

    r = sbx(sbxd, "ls")
    assert sid.encode() in r.stdout
    r = sbx(sbxd, "ls", "--json")
    assert sid in [s["sandbox_id"] for s in json.loads(r.stdout)["sandboxes"]]

    r = sbx(sbxd, "rm", sid)
    assert r.returncode == 0 and r.stdout.decode().strip() == sid
    r = sbx(sbxd, "ls")
    assert sid.encode() not in r.stdout
    r = sbx(sbxd, "ls", "--all")
    assert sid.encode() in r.stdout and b"terminated by caller" in r.stdout

    # Errors: reported with the API's code, non-zero status.
    r = sbx(sbxd, "exec", sid, "--", "true")
    assert r.returncode == 125 and b"sandbox_terminated" in r.stderr
    r = sbx(sbxd, "status", "sb_00000000000000000000")
    assert r.returncode == 1 and b"sandbox_not_found" in r.stderr
    r = sbx(sbxd, "create", "--timeout", "0")
    assert r.returncode == 1 and b"timeout" in r.stderr


def test_cli_cannot_reach_sbxd():
    env = dict(os.environ, SBX_URL="http://127.0.0.1:1")
    r = subprocess.run([str(SBX), "ls"], capture_output=True, env=env, timeout=60)
    assert r.returncode == 125 and b"sbxd" in r.stderr
    r = subprocess.run([str(SBX), "exec", "sb_0"], capture_output=True, env=env, timeout=60)
    assert r.returncode == 2
