"""sbxd holding thousands of fds (several per sandbox) keeps accepting connections and
spawning sandboxes: nothing may depend on fds staying below FD_SETSIZE or below the
sandboxes' own RLIMIT_NOFILE."""
import os
import subprocess
from unittest import mock

import pytest

from .conftest import Sbxd, finish, make_state_dir

INHERITED = 4500  # above FD_SETSIZE (1024) and above a sandbox's RLIMIT_NOFILE (4096)


class CrowdedSbxd(Sbxd):
    def start(self):
        fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self.fds = [fd] + [os.dup(fd) for _ in range(INHERITED - 1)]
        real_popen = subprocess.Popen

        def popen(*args, **kw):
            return real_popen(*args, pass_fds=self.fds, **kw)

        try:
            with mock.patch.object(subprocess, "Popen", popen):
                return super().start()
        finally:
            for f in self.fds:
                os.close(f)


def test_sbxd_with_thousands_of_fds_still_serves_and_spawns(python_image):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < INHERITED + 200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        d = CrowdedSbxd(make_state_dir()).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert len(os.listdir(f"/proc/{d.proc.pid}/fd")) > INHERITED
        sid = d.create()
        r = d.exec(sid, "ls /proc/self/fd | wc -l")
        assert r.status_code == 200, r.text
        assert r.json()["stdout"].strip() == "4"  # 0-2 and ls's own directory fd
    finally:
        finish(d)
