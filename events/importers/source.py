"""Opening a file to import: plain or gzip, streamed, counting the bytes read for progress."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from events.importers.errors import SourceUnreadable
from events.importers.outcome import Refused

__all__ = ["CsvRow", "csv_rows", "open_source"]

_CHUNK = 1 << 16


class _CountedReader(io.RawIOBase):
    """A raw reader that reports how many bytes it took from the file on disk."""

    def __init__(self, raw: IO[bytes], on_bytes: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        if data:
            self._on_bytes(len(data))
        return len(data)


@contextmanager
def open_source(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when it ends in `.gz`; `on_bytes` sees bytes read on disk.

    Nothing is read ahead: callers pull as they parse, so a file of any size streams.
    """
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise SourceUnreadable(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        counted = io.BufferedReader(_CountedReader(raw, on_bytes or (lambda _n: None)), _CHUNK)
        if path.suffix.lower() == ".gz":
            with gzip.GzipFile(fileobj=counted, mode="rb") as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield counted
    finally:
        raw.close()


CsvRow = tuple[int, dict[str, str]]
"""A CSV record: the line it starts on (the header is line 1) and its values by column."""


def csv_rows(stream: IO[bytes], source: str) -> Iterator[CsvRow | Refused]:
    """Stream a CSV export (UTF-8, with or without a BOM) row by row, by column name.

    Column names are stripped of surrounding spaces; blank lines are skipped; a row
    with more or fewer fields than the header is refused with its line number.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    try:
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise SourceUnreadable(f"{source} is empty: a CSV export starts with a header row")
        line = reader.line_num + 1
        for fields in reader:
            start, line = line, reader.line_num + 1
            if not fields or fields == [""]:
                continue
            if len(fields) != len(header):
                yield Refused(
                    source,
                    f"line {start}",
                    f"{len(fields)} fields where the header has {len(header)}",
                )
                continue
            yield start, dict(zip(header, fields, strict=True))
    except UnicodeDecodeError as exc:
        raise SourceUnreadable(
            f"{source} is not UTF-8 text near line {reader.line_num + 1} ({exc.reason}); "
            "export it as UTF-8"
        ) from None
    except (csv.Error, gzip.BadGzipFile, EOFError) as exc:
        raise SourceUnreadable(
            f"{source} line {reader.line_num}: not readable as CSV: {exc}"
        ) from None
    finally:
        text.detach()
