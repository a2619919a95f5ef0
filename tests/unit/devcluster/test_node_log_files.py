"""Container logs are stored in the CRI format and read back like `kubectl logs`."""

from __future__ import annotations

import io
from pathlib import Path

from devcluster.node import logs


def write_log(path: Path, chunks: list[tuple[str, bytes]]) -> None:
    handle = io.BytesIO()
    writers = {s: logs.LogWriter(handle, s) for s in ("stdout", "stderr")}
    for stream, chunk in chunks:
        writers[stream].write(chunk)
    for writer in writers.values():
        writer.close()
    path.write_bytes(handle.getvalue())


def test_lines_round_trip_with_tail_limit_and_streams(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write_log(path, [("stdout", b"one\ntw"), ("stdout", b"o\nthree\n"), ("stderr", b"err\n")])
    records = logs.read_records(path)
    assert logs.render(records) == b"one\ntwo\nthree\nerr\n"
    assert logs.render(records, tail_lines=2) == b"three\nerr\n"
    assert logs.render(records, limit_bytes=5) == b"one\nt"
    assert logs.render(logs.select_records(records, stream="Stderr")) == b"err\n"
    stamped = logs.render(records, timestamps=True).splitlines()[0]
    assert stamped.endswith(b"Z one") and stamped[:4].isdigit()


def test_read_finds_current_and_previous_instances(tmp_path: Path) -> None:
    folder = logs.container_dir(logs.pod_dir(tmp_path / "pods", "ns", "p", "uid"), "main")
    folder.mkdir(parents=True)
    write_log(logs.log_path(folder, 0), [("stdout", b"first\n")])
    write_log(logs.log_path(folder, 1), [("stdout", b"second\n")])
    assert logs.read(tmp_path, "ns", "p", "main") == "second\n"
    assert logs.read(tmp_path, "ns", "p", "main", previous=True) == "first\n"
    assert logs.read(tmp_path, "ns", "other", "main") == ""


def test_fallback_message_is_the_last_80_lines_within_2048_bytes(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write_log(path, [("stdout", b"".join(b"line %d\n" % i for i in range(100)))])
    message = logs.read_fallback_message(path)
    assert message.startswith("line 20\n") and message.endswith("line 99\n")
    write_log(path, [("stdout", b"x" * 5000 + b"\n")])
    assert len(logs.read_fallback_message(path)) == 2048
