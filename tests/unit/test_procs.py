"""Pid files of the local stack: a pid that now names another process is not ours."""

from __future__ import annotations

import sys
from pathlib import Path

from resumewatch.stack.procs import pid_alive, read_pid, start_process, stop_process


def test_a_pid_file_names_the_process_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    pid = start_process(
        [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "x.log", pidfile
    )
    try:
        assert read_pid(pidfile) == pid
        assert len(pidfile.read_text().split()) == 2  # pid and start time
    finally:
        assert stop_process(pidfile, timeout=10)
    assert not pid_alive(pid)
    assert read_pid(pidfile) is None
    assert not stop_process(pidfile)


def test_a_reused_pid_is_not_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    pid = start_process(
        [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "x.log", pidfile
    )
    try:
        # As after a reboot: the file's pid runs, but it is a process started at another time.
        pidfile.write_text(f"{pid} 1")
        assert read_pid(pidfile) is None
        assert not stop_process(pidfile)
        assert pid_alive(pid)
    finally:
        pidfile.write_text(str(pid))  # a pid file of an older version: the pid alone
        assert read_pid(pidfile) == pid
        assert stop_process(pidfile, timeout=10)


def test_a_kafka_cluster_id_never_starts_with_a_dash() -> None:
    import uuid

    from resumewatch.stack.kafka import new_cluster_id

    # 0xF8 as the first byte encodes to "-" in URL-safe base64: the storage tool would take
    # such an id for an option.
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" * 16)])
    cid = new_cluster_id(lambda: next(drawn))
    assert cid == "AQEBAQEBAQEBAQEBAQEBAQ"
    assert len(new_cluster_id()) == 22
