"""Container logs: rotation at the kubelet's defaults, and reads that never hold a whole log in memory."""

from __future__ import annotations

import asyncio
import gzip
import os
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from labkit.sandbox.logfiles import MAX_FILES, MAX_SIZE, LogWriter
from labkit.sandbox.logs import LogOptions, LogReader, PodLogs


def cri(stamp: datetime, text: str, stream: str = "stdout") -> bytes:
    return f"{stamp.strftime('%Y-%m-%dT%H:%M:%S.%f')}000Z {stream} F {text}\n".encode()


def write_log(path: Path, lines: int, start: datetime, step: timedelta = timedelta(seconds=1)) -> None:
    with path.open("wb") as f:
        for i in range(lines):
            f.write(cri(start + i * step, f"line {i} " + "x" * 80))


def test_rotation_defaults_are_the_kubelets() -> None:
    # KubeletConfiguration defaults: containerLogMaxSize "10Mi", containerLogMaxFiles 5
    assert (MAX_SIZE, MAX_FILES) == (10 * 1024 * 1024, 5)


def test_a_log_past_its_size_rotates_and_keeps_at_most_max_files(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    # four rotations from earlier seconds, as the kubelet leaves them: older ones gzipped, the latest not
    for i, stamp in enumerate(("20260101-000001", "20260101-000002", "20260101-000003", "20260101-000004")):
        (tmp_path / f"0.log.{stamp}{'' if i >= 2 else '.gz'}").write_bytes(b"old\n")
    (tmp_path / "0.log.20260101-000000.tmp").write_bytes(b"half a compression")
    writer = LogWriter(log, max_size=2000)
    for i in range(30):  # ~2.4 kB: one rotation
        writer.write("stdout", f"line {i} " + "y" * 64)
    writer.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == MAX_FILES and not any(n.endswith(".tmp") for n in names)
    # the oldest dropped so 3 (max - 2) rotated files remain before this rotation; the latest of them stays
    # uncompressed for a reader still on it, as upstream's compressUncompressedLogs leaves it
    assert names[:4] == ["0.log", "0.log.20260101-000002.gz", "0.log.20260101-000003.gz", "0.log.20260101-000004"]
    newest = tmp_path / names[-1]
    assert newest.suffix != ".gz" and newest.read_bytes().startswith(b"20")  # the rotated log itself
    assert b"line 0 " in newest.read_bytes()
    assert gzip.decompress((tmp_path / "0.log.20260101-000003.gz").read_bytes()) == b"old\n"  # compressed now
    assert log.stat().st_size < 2000 and b"line 29 " in log.read_bytes()


def test_options_on_a_log_many_times_the_chunk_size(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    start = datetime.now(UTC) - timedelta(seconds=50_000)
    write_log(log, 50_000, start)  # ~6.5 MB
    logs = PodLogs(tmp_path)
    assert logs.read(log, LogOptions(tail_lines=2)).decode().splitlines() == [
        "line 49998 " + "x" * 80,
        "line 49999 " + "x" * 80,
    ]
    since = (start + timedelta(seconds=49_997)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(logs.read(log, LogOptions(since_time=since)).splitlines()) == 3
    assert 980 <= len(logs.read(log, LogOptions(since_seconds=1000)).splitlines()) <= 1000  # the clock moves on
    # the kubelet applies tail first, then since: fewer lines than the tail asked for
    assert len(logs.read(log, LogOptions(tail_lines=5, since_time=since)).splitlines()) == 3
    assert logs.read(log, LogOptions(limit_bytes=12)) == b"line 0 xxxxx"
    stamped = logs.read(log, LogOptions(tail_lines=1, timestamps=True)).decode()
    assert (
        stamped.startswith((start + timedelta(seconds=49_999)).strftime("%Y-%m-%dT%H:%M:%S."))
        and "000Z line" in stamped
    )
    assert logs.read(log, LogOptions(tail_lines=0)) == b""


def test_reading_a_large_log_holds_only_a_block_in_memory(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write_log(log, 100_000, datetime.now(UTC) - timedelta(days=3))  # ~13 MB
    logs = PodLogs(tmp_path)

    async def consume(options: LogOptions) -> int:
        return sum([len(chunk) async for chunk in logs.stream(log, options)])

    for options in (LogOptions(), LogOptions(since_seconds=3600), LogOptions(tail_lines=100_000)):
        tracemalloc.start()
        total = asyncio.run(consume(options))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 2 * 1024 * 1024, (options, peak)  # the old reader built the whole answer: ~9 MB
        assert total > 0 or options.since_seconds


def test_tail_reads_from_the_end(tmp_path: Path) -> None:
    # a 4 GiB sparse file of zeros with two lines at its end: read from the start, it would take a minute and
    # gigabytes; read from the end it is two blocks
    log = tmp_path / "0.log"
    with log.open("wb") as f:
        f.seek(4 * 2**30)
        now = datetime.now(UTC)
        f.write(b"\n" + cri(now, "second to last") + cri(now, "last"))
    reader = LogReader(log, LogOptions(tail_lines=2))
    try:
        assert b"".join(reader.present()) == b"second to last\nlast\n"
    finally:
        reader.close()


def test_following_continues_across_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    writer = LogWriter(log, max_size=300)
    writer.write("stdout", "first")
    reader = LogReader(log, LogOptions())
    try:
        assert b"".join(reader.present()) == b"first\n"
        writer.write("stdout", "second")
        for i in range(4):  # past 300 bytes: rotated, and the next lines go to a new 0.log
            writer.write("stdout", f"filler {i} " + "z" * 60)
        writer.write("stdout", "after rotation")
        assert len(list(tmp_path.iterdir())) == 2
        followed = b"".join(reader.more()).decode().splitlines()
        assert followed[0] == "second" and followed[-1] == "after rotation"
    finally:
        reader.close()
        writer.close()
    assert os.path.exists(log)
