"""A real headless Chromium for the HTML pages' tests (Debian's package; `make system`
installs it). Every host name is unresolvable, so a page that reaches for the network
shows it; each run is bounded and its whole process group is killed afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def chromium(url: str, tmp: Path, *args: str, timeout: float = 60.0,
             window: str = "1280,1600") -> tuple[str, str]:
    """Run headless Chromium on ``url``; (stdout, stderr). Killed with its children on return."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make system` (or apt-get install -y chromium)")
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", f"--user-data-dir={tmp / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={window}",
        "--virtual-time-budget=15000", *args, url,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {timeout} s on {url}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # helpers (zygote, GPU process) left behind
        except ProcessLookupError:
            pass
    return out, err
