"""Disk spool for points the time-series server has not acknowledged yet.

Segments are whole batches written atomically (temp file + fsync + rename) as
``<seq:020d>-<lines>.lp``; they are replayed oldest-first and deleted only after the server
acknowledged them, so replay preserves order and never sends a point twice. The spool has a
byte cap: when it is full the *oldest* segments are dropped (fresh data matters more to an
operator), logged at ERROR and counted in ``dropped_lines``.

A segment that cannot be read back whole (not UTF-8, fewer or more lines than its name says, gone)
or that the server refuses is moved to ``quarantine/`` beside the segments, logged and counted in
``quarantined_lines``; it never blocks the segments behind it. Quarantined files are kept for an
operator to inspect (and delete).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from telemetry.throttle import LogThrottle

log = logging.getLogger(__name__)

_SEGMENT_RE = re.compile(r"^(\d{20})-(\d+)\.lp$")


class SpoolError(OSError):
    """The spool directory cannot be used."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"telemetry spool {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True, order=True)
class Segment:
    """One spooled batch on disk."""

    seq: int
    lines: int
    size: int
    path: Path


class Spool:
    """A size-capped, ordered, crash-safe queue of line-protocol batches on disk (not thread-safe)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.directory = directory
        self.max_bytes = max_bytes
        self.dropped_lines = 0
        self.dropped_segments = 0
        self.quarantined_lines = 0
        self.quarantined_segments = 0
        self._drop_log = LogThrottle()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(directory, str(exc)) from exc
        self._segments: list[Segment] = []
        for entry in sorted(directory.iterdir()):
            match = _SEGMENT_RE.match(entry.name)
            if match:
                self._segments.append(Segment(int(match.group(1)), int(match.group(2)), entry.stat().st_size, entry))
            elif entry.name.endswith(".tmp"):
                entry.unlink(missing_ok=True)  # a crash mid-write: that batch was never acknowledged
        self._segments.sort()
        self._next_seq = self._segments[-1].seq + 1 if self._segments else 1
        self._bytes = sum(s.size for s in self._segments)

    @property
    def bytes(self) -> int:
        """Bytes currently spooled."""
        return self._bytes

    @property
    def lines(self) -> int:
        """Points currently spooled."""
        return sum(s.lines for s in self._segments)

    @property
    def segments(self) -> int:
        """Number of spooled segments."""
        return len(self._segments)

    def __bool__(self) -> bool:
        return bool(self._segments)

    def append(self, lines: list[str]) -> int:
        """Spool one batch; returns the number of lines dropped to respect the cap (0 normally)."""
        if not lines:
            return 0
        data = ("\n".join(lines) + "\n").encode()
        dropped = 0
        if len(data) > self.max_bytes:
            dropped = len(lines)
            self._record_drop(dropped, 0, "batch larger than the whole spool")
            return dropped
        while self._segments and self._bytes + len(data) > self.max_bytes:
            oldest = self._segments.pop(0)
            oldest.path.unlink(missing_ok=True)
            self._bytes -= oldest.size
            dropped += oldest.lines
            self._record_drop(oldest.lines, 1, "spool full, dropping oldest segment")
        seq = self._next_seq
        self._next_seq += 1
        final = self.directory / f"{seq:020d}-{len(lines)}.lp"
        tmp = final.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SpoolError(self.directory, f"cannot write segment: {exc}") from exc
        self._segments.append(Segment(seq, len(lines), len(data), final))
        self._bytes += len(data)
        return dropped

    def _record_drop(self, lines: int, segments: int, why: str) -> None:
        self.dropped_lines += lines
        self.dropped_segments += segments
        if self._drop_log.due():
            log.error(
                "telemetry spool DROPPED %d points (%s); cap %d bytes, total dropped %d (%d drops not logged)",
                lines, why, self.max_bytes, self.dropped_lines, self._drop_log.take_suppressed(),
            )  # fmt: skip

    def peek(self, max_lines: int) -> list[Segment]:
        """The oldest segments totalling at most ``max_lines`` points (always at least one)."""
        picked: list[Segment] = []
        total = 0
        for segment in self._segments:
            if picked and total + segment.lines > max_lines:
                break
            picked.append(segment)
            total += segment.lines
        return picked

    def fits(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more can be spooled without dropping an older segment."""
        return self._bytes + nbytes <= self.max_bytes

    @staticmethod
    def read(segments: list[Segment]) -> list[str]:
        """The lines of ``segments`` in order (raises on a damaged one: see :meth:`read_sound`)."""
        lines: list[str] = []
        for segment in segments:
            lines.extend(ln for ln in segment.path.read_text(encoding="utf-8").split("\n") if ln)
        return lines

    def read_sound(self, segments: list[Segment]) -> tuple[list[Segment], list[str]]:
        """The segments that read back whole and their lines; damaged ones are quarantined."""
        sound: list[Segment] = []
        lines: list[str] = []
        for segment in segments:
            try:
                text = segment.path.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                self.quarantine(segment, f"unreadable: {exc}")
                continue
            got = [ln for ln in text.split("\n") if ln]
            if len(got) != segment.lines:
                self.quarantine(segment, f"torn: {len(got)} lines, {segment.lines} written")
                continue
            sound.append(segment)
            lines.extend(got)
        return sound, lines

    def quarantine(self, segment: Segment, why: str) -> None:
        """Move a segment out of the queue into ``quarantine/`` (kept for inspection) and count it."""
        self._segments.remove(segment)
        self._bytes -= segment.size
        self.quarantined_lines += segment.lines
        self.quarantined_segments += 1
        target = self.directory / "quarantine"
        try:
            target.mkdir(exist_ok=True)
            os.replace(segment.path, target / segment.path.name)
        except OSError:
            segment.path.unlink(missing_ok=True)
        log.error(
            "telemetry spool QUARANTINED segment %s (%d points): %s; %d points quarantined so far",
            segment.path.name, segment.lines, why, self.quarantined_lines,
        )  # fmt: skip

    def ack(self, segments: list[Segment]) -> None:
        """The server acknowledged these (oldest) segments: delete them."""
        for segment in segments:
            if not self._segments or self._segments[0] != segment:
                raise ValueError(f"ack out of order: {segment.path.name}")
            self._segments.pop(0)
            segment.path.unlink(missing_ok=True)
            self._bytes -= segment.size
