"""Escape attempts from inside real sandboxes: code running as the sandbox's root that
goes after PID 1 (sbx-init), the host and the other sandboxes."""
import pytest

from sandbox_util import probe

pytestmark = pytest.mark.usefixtures("python_image")


def test_pid1_is_not_reachable_through_proc():
    # execve makes a readable program dumpable again, whatever the runtime set before it:
    # sbx-init must clear the flag itself. A dumpable PID 1 that runs as the sandbox's
    # root can have its memory rewritten through /proc/1/mem (no ptrace needed), which
    # gives a command PID 1's fds (fd 4 is a host file opened read-write), and shows
    # host paths in /proc/1/exe, maps and fd links.
    r, kv = probe("pid1")
    assert r.returncode == 0, r.stderr
    for key in ("pid1_mem_rw", "pid1_mem_ro", "pid1_fd4", "pid1_maps", "pid1_environ",
                "pid1_exe", "pid1_fd4_link"):
        assert kv[key] == ["Permission denied"], (key, r.stdout)
