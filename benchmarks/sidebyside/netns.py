"""Run the harness inside a private network namespace that has nothing but loopback.

Upstream ``stepflow-server`` binds every interface and has no host option, so it must never run in the
host's namespace. The harness re-executes itself under ``unshare -n`` (root) or ``unshare -rn`` (an
unprivileged user namespace), brings ``lo`` up, and refuses to go on if any other interface exists.
Both servers and the client live in that namespace; everything they start stays there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["ENV_FLAG", "enter_or_reexec", "inside"]

ENV_FLAG = "SIDEBYSIDE_NETNS"


def inside() -> bool:
    """True in the re-executed process (the flag is set only by ``enter_or_reexec``)."""
    return os.environ.get(ENV_FLAG) == "1"


def _unshare_flags() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("harness: `unshare` (util-linux) is required to isolate the upstream server")
    candidates = [["-n"], ["-rn"]] if os.geteuid() == 0 else [["-rn"]]
    for flags in candidates:
        probe = subprocess.run([unshare, *flags, "true"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [unshare, *flags]
    raise SystemExit(
        "harness: cannot create a network namespace (`unshare -rn true` failed: unprivileged "
        "user namespaces disabled?); run as root or enable kernel.unprivileged_userns_clone"
    )


def enter_or_reexec(script: Path) -> None:
    """Outside: replace this process with itself under ``unshare`` (never returns). Inside: set up lo."""
    if not inside():
        cmd = [*_unshare_flags(), sys.executable, str(script), *sys.argv[1:]]
        os.execvpe(cmd[0], cmd, {**os.environ, ENV_FLAG: "1"})
    ip = shutil.which("ip") or "/usr/sbin/ip"
    subprocess.run([ip, "link", "set", "lo", "up"], check=True, timeout=30)
    # /proc/self/net follows this process's namespace (/sys/class/net follows sysfs's mounter).
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    others = sorted(n for n in (ln.split(":", 1)[0].strip() for ln in lines) if n != "lo")
    if others:
        raise SystemExit(
            f"harness: the namespace has interfaces besides lo ({', '.join(others)}); refusing to "
            "start upstream, which binds every interface"
        )
