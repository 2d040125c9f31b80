"""What a live SOURCE names (camera, network URL or a file played in real time) and how to open it.

Every open and every read has a time limit: PyAV's interrupt callback (`av.open(timeout=)`)
bounds them whatever the protocol, and the protocol's own socket timeout is set as well, so
a peer that accepts the connection and then stays silent cannot hold a thread forever.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

from derain.stream.decode import InputError, Source, open_url

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "tcp", "srt")
KNOWN = "rtsp://, rtsps://, http(s)://, udp://, tcp://, srt://, /dev/videoN, v4l2:DEVICE, a camera index, or a file with realtime=True"


@dataclass(frozen=True)
class LiveSource:
    """A parsed SOURCE: what to hand to av.open, and whether it ends for good at its end."""

    text: str  # as the user gave it, for messages
    url: str
    kind: str  # "camera", "network" or "file"
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def reconnects(self) -> bool:
        """A file's end is the end of the job; a camera's or a stream's is a drop to recover from."""
        return self.kind != "file"


def parse_source(text: str, timeout: float, realtime: bool = False, extra: dict[str, str] | None = None) -> LiveSource:
    """Turn SOURCE into a `LiveSource`, or raise InputError saying what SOURCE may be."""
    micros = str(int(timeout * 1_000_000))
    extra = dict(extra or {})
    # Low delay: no input buffering beyond what the demuxer needs to find the stream.
    low_delay = {"fflags": "nobuffer", "flags": "low_delay"}
    if text.isdigit():
        return LiveSource(text, f"/dev/video{text}", "camera", "v4l2", extra)
    if text.startswith("v4l2:"):
        device = text[len("v4l2:"):]
        device = f"/dev/video{device}" if device.isdigit() else device
        return LiveSource(text, device, "camera", "v4l2", extra)
    if text.startswith("/dev/video"):
        return LiveSource(text, text, "camera", "v4l2", extra)
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if match:
        scheme = match.group(1).lower()
        if scheme not in NETWORK_SCHEMES:
            raise InputError(f"SOURCE {text}: unknown scheme {scheme}://; give {KNOWN}")
        if scheme in ("rtsp", "rtsps"):
            # TCP: RTP over UDP is lost behind NAT and firewalls; `timeout` is the socket I/O timeout.
            options = {"rtsp_transport": "tcp", "timeout": micros}
        elif scheme in ("http", "https"):
            options = {"rw_timeout": micros}
        elif scheme == "udp":
            # A burst larger than the socket buffer should cost frames, not the connection.
            options = {"timeout": micros, "overrun_nonfatal": "1", "fifo_size": "50000"}
        else:
            options = {"timeout": micros}
        return LiveSource(text, text, "network", None, {**low_delay, **options, **extra})
    path = Path(text)
    if path.is_file():
        if not realtime:
            raise InputError(f"SOURCE {text}: is a file; pass realtime=True to play it as a live source, or derain it whole as a video file")
        return LiveSource(text, str(path), "file", None, extra)
    if path.exists():
        raise InputError(f"SOURCE {text}: not a file, camera or URL; give {KNOWN}")
    raise InputError(f"SOURCE {text}: no such file, and not a camera or URL; give {KNOWN}")


class SourceUnavailable(Exception):
    """An open that failed in a way a later try may not: refused, timed out, dropped."""


def open_live(source: LiveSource, timeout: float) -> Source:
    """Open `source` within `timeout` seconds (and have each later read give up after as long).

    Failures come back as SourceUnavailable with a one-line reason, to retry or report.
    """
    start = time.monotonic()
    try:
        return open_url(source.url, source.format, source.options, timeout=(timeout, timeout))
    except InputError as err:
        # A stream that came up without video frames may be a server still starting: try again.
        if not source.reconnects:
            raise
        raise SourceUnavailable(str(err)) from None
    except (av.error.FFmpegError, OSError) as err:
        # Either timeout may fire first (PyAV's interrupt, or the protocol's socket timeout,
        # which some demuxers report as invalid data): the time taken says which it was.
        if isinstance(err, (av.error.ExitError, TimeoutError)) or time.monotonic() - start >= 0.9 * timeout:
            raise SourceUnavailable(f"{source.text}: no data within {timeout:g} s (`timeout`); is the stream running?") from None
        raise SourceUnavailable(f"{source.text}: {describe(err)}") from None


def describe(err: BaseException) -> str:
    """A one-line reason for a failed open or read, with what to check."""
    if isinstance(err, ConnectionRefusedError):
        return "connection refused: nothing listens there; is the server up and the port right?"
    if isinstance(err, FileNotFoundError):
        return "no such device or stream (check the path, or the URL's mount point)"
    if isinstance(err, PermissionError):
        return "permission denied (camera: is the user in the video group?)"
    if isinstance(err, (av.error.ExitError, TimeoutError)):
        return "no data within the read timeout (`timeout`)"
    if isinstance(err, av.error.ProtocolNotFoundError):
        return "this FFmpeg build cannot read that protocol"
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return text.splitlines()[0]


class Backoff:
    """Delays between reconnect tries: exponential from `first`, capped at `cap`, with jitter so
    that many clients of one restarted server do not all come back in the same instant."""

    def __init__(self, first: float = 0.5, cap: float = 8.0, rng: random.Random | None = None) -> None:
        self.first, self.cap = first, cap
        self.rng = rng or random.Random()
        self.tries = 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2 ** self.tries)
        self.tries += 1
        return delay * self.rng.uniform(0.5, 1.0)
