"""Process plumbing for the local stack: pid files, ports and readiness polling."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class StackError(RuntimeError):
    """A problem the operator can fix; its message is one sentence saying how."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks after boot), which tells a process from a later
    one that got the same pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def read_pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` while that very process runs; None once it ended, also when the
    pid now belongs to another process (after a reboot, say)."""
    try:
        fields = pidfile.read_text().split()
        pid = int(fields[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    if not pid_alive(pid):
        return None
    if len(fields) > 1 and start_time(pid) != fields[1]:
        return None
    return pid


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def start_process(
    cmd: Sequence[str],
    log: Path,
    pidfile: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``cmd`` detached from this terminal, output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - commands are built by this package
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    pidfile.write_text(f"{proc.pid} {start_time(proc.pid) or ''}".strip())
    return proc.pid


def stop_process(pidfile: Path, timeout: float = 30.0) -> bool:
    """Stop the process named by ``pidfile`` (TERM, then KILL); True if one was running."""
    pid = read_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        while pid_alive(pid):
            time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return True


def stop_children(procs: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """Stop child processes started with Popen (TERM to all, then KILL who is left)."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``check`` until it is true; fail with a clear sentence at the deadline."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - any failure just means "not ready yet"
            last_error = f" (last error: {exc})"[:300]
        if alive is not None and not alive():
            hint = f"; see {log}" if log else ""
            raise StackError(f"{what} exited during startup{hint}.")
        if time.monotonic() > deadline:
            hint = f"; see {log}" if log else ""
            raise StackError(f"{what} was not ready within {timeout:.0f} s{hint}{last_error}.")
        time.sleep(0.2)
