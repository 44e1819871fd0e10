#!/usr/bin/env python3
"""Write an OCI bundle config.json for the crun peer of bench/run.sh.

usage: oci_config.py BUNDLE_DIR ROOTFS CGROUP_PATH ARG...

The container gets what an sbx sandbox gets, as far as OCI can say it: the rootfs
read-only, new pid/net/ipc/uts/mount/cgroup namespaces, a user namespace mapping root to
an unprivileged host range, cgroup limits (1 CPU, 1 GiB, 512 pids), /proc, a tmpfs /dev
and /tmp, masked /proc paths, few capabilities and no_new_privs. Standard library only.
"""
import json
import os
import sys


def config(rootfs, cgroup_path, args):
    caps = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME=/root"],
            "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777"]},
        ],
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": 300000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 300000, "size": 65536}],
            "namespaces": [{"type": t} for t in
                           ("pid", "network", "ipc", "uts", "user", "mount", "cgroup")],
            "cgroupsPath": cgroup_path,
            "resources": {
                "memory": {"limit": 1 << 30},
                "pids": {"limit": 512},
                "cpu": {"quota": 100000, "period": 100000},
            },
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/sched_debug", "/proc/scsi",
                            "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    bundle, rootfs, cgroup_path, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    os.makedirs(bundle, exist_ok=True)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config(rootfs, cgroup_path, args), f, indent=1)


if __name__ == "__main__":
    main()
