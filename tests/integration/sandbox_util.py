"""Helpers to run commands and the static probe inside real one-shot sandboxes."""
import collections
import subprocess

from conftest import PROBE, SBX, sbx_env

# The probe is copied into the sandbox through stdin, so nothing of the host is mounted in.
_PROBE_SCRIPT = 'cat > /tmp/.probe && chmod 755 /tmp/.probe && exec /tmp/.probe "$@"'


def sbx_run(cmd, opts=(), stdin=None, timeout=180, text=False, prefix=()):
    """Run `PREFIX sbx run -q OPTS -- CMD` (PREFIX: e.g. chrt, nice, setarch, which start
    sbx); returns the CompletedProcess (bytes unless text)."""
    r = subprocess.run([*prefix, str(SBX), "run", "-q", *opts, "--", *cmd], input=stdin,
                       capture_output=True, env=sbx_env(), timeout=timeout)
    if text:
        r.stdout = r.stdout.decode(errors="replace")
        r.stderr = r.stderr.decode(errors="replace")
    return r


def probe(*args, opts=(), timeout=180):
    """Run sbx-probe ARGS in a fresh sandbox; returns (CompletedProcess, {key: [values]})."""
    r = sbx_run(["/bin/sh", "-c", _PROBE_SCRIPT, "sh", *args], opts=opts,
                stdin=PROBE.read_bytes(), timeout=timeout, text=True)
    return r, parse(r.stdout)


def probe_cmd(*args):
    """A shell command line that runs the probe, for tests that compose their own script."""
    return "/tmp/.probe " + " ".join(args)


def parse(out):
    kv = collections.defaultdict(list)
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        kv[key].append(value)
    return kv
