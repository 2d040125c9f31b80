"""`derain live`: a real RTSP server on 127.0.0.1, killed and restarted under the pipeline.

The server is GStreamer's (tests/rtsp_server.py, run with the system python3); the tests that
need it skip when it cannot be imported there (tests/install-system-deps.sh installs it).
Every wait is bounded by a deadline.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import pytest
from stand_ins import IdentityEngine
from videos import corrupt_jpeg, make_resizing_mjpeg, make_video

from derain.stream import live_pipeline
from derain.stream.decode import InputError
from derain.stream.encode import Sink
from derain.stream.live_pipeline import LiveError, LiveJob, LiveStats, run_live
from derain.stream.sources import Backoff, parse_source

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("rtsp_server.py")


def _gst_missing() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is absent"
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30, check=False)
    if done.returncode:
        return f"{SYSTEM_PYTHON} cannot import GstRtspServer (run tests/install-system-deps.sh as root)"
    return None


GST_MISSING = _gst_missing()
needs_rtsp = pytest.mark.skipif(GST_MISSING is not None, reason=GST_MISSING or "")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """tests/rtsp_server.py in a subprocess: start, kill (as a crash would), start again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"rtsp://127.0.0.1:{port}/test"
        self.process: subprocess.Popen | None = None

    def start(self, pattern: str = "smpte") -> None:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), "--port", str(self.port), "--pattern", pattern],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        ready, _, _ = select.select([self.process.stdout], [], [], 20)
        line = self.process.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.kill()
            raise RuntimeError(f"the RTSP server did not start: {line!r}")
        self.lines: list[str] = []
        stdout = self.process.stdout
        threading.Thread(target=lambda: self.lines.extend(iter(stdout.readline, "")), daemon=True).start()

    def received(self, at_least: int, seconds: float) -> int:
        """Frames received on /publish (the server prints every 10th), waiting up to `seconds` for `at_least`."""
        deadline = time.monotonic() + seconds
        while True:
            counts = [int(line.split()[1]) for line in list(self.lines) if line.startswith("received ")]
            count = max(counts, default=0)
            if count >= at_least or time.monotonic() > deadline:
                return count
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process.stdout.close()
            self.process = None


@pytest.fixture
def server() -> Iterator[RtspServer]:
    if GST_MISSING is not None:
        pytest.skip(GST_MISSING)  # here too, so a test cannot forget the mark and error instead
    rtsp = RtspServer(free_port())
    rtsp.start()
    try:
        yield rtsp
    finally:
        rtsp.kill()


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


def interrupt_when(condition: Callable[[], bool], seconds: float) -> threading.Thread:
    """Ctrl-C the main thread (where run_live runs) once `condition` holds, or after `seconds`."""

    def watch() -> None:
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)
        _thread.interrupt_main()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def in_background(body: Callable[[], None]) -> list[BaseException]:
    """Run `body` on a thread that Ctrl-Cs the main thread (where run_live runs) when it ends,
    however it ends: a step that fails then fails the test instead of leaving run_live running
    forever. Returns the list its error, if any, lands in."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            body()
        except BaseException as err:
            errors.append(err)
        finally:
            _thread.interrupt_main()

    threading.Thread(target=run, daemon=True).start()
    return errors


def live_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("derain-live")]


def recorded_pts(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        return [float(frame.pts * video.time_base) for frame in container.decode(video)]


class SleepEngine(IdentityEngine):
    """A stand-in for an engine slower than the stream."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def run(self, batch):
        time.sleep(self.seconds)
        return super().run(batch)


def job(source: str, **kw) -> LiveJob:
    timeout = kw.pop("timeout", 3.0)
    return LiveJob(parse_source(source, timeout, kw.pop("realtime", False)), timeout=timeout, **kw)


# -- SOURCE parsing and backoff: no server needed ----------------------------------------------


def test_parse_source_kinds(tmp_path: Path) -> None:
    assert parse_source("0", 1).url == "/dev/video0" and parse_source("0", 1).format == "v4l2"
    assert parse_source("v4l2:2", 1).url == "/dev/video2"
    rtsp = parse_source("rtsp://127.0.0.1:8554/cam", 2.5)
    assert rtsp.kind == "network" and rtsp.options["timeout"] == "2500000" and rtsp.options["rtsp_transport"] == "tcp"
    assert parse_source("udp://127.0.0.1:5000", 1).options["timeout"] == "1000000"
    with pytest.raises(InputError, match="unknown scheme foo://"):
        parse_source("foo://x", 1)
    clip = make_video(tmp_path / "clip.mp4", frames=2)
    with pytest.raises(InputError, match="realtime=True"):
        parse_source(str(clip), 1)
    assert parse_source(str(clip), 1, realtime=True).kind == "file"


def test_backoff_grows_with_jitter_and_caps() -> None:
    backoff = Backoff(first=0.5, cap=4.0)
    delays = [backoff.next() for _ in range(8)]
    for k, delay in enumerate(delays):
        full = min(4.0, 0.5 * 2**k)
        assert 0.5 * full <= delay <= full


def test_unknown_scheme_is_a_clear_cli_error() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "derain", "live", "gopher://127.0.0.1/x", "--device", "cpu"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "unknown scheme gopher://" in done.stderr
    assert time.monotonic() - started < 30


def test_nothing_listening_fails_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(LiveError, match="connection refused"):
        run_live(job(f"rtsp://127.0.0.1:{free_port()}/test", timeout=3.0), IdentityEngine())
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("scheme", ["rtsp", "tcp"])
def test_silent_peer_times_out(scheme: str) -> None:
    """A server that accepts the connection and never sends: an error after --timeout, not a hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    url = f"{scheme}://127.0.0.1:{port}" + ("/test" if scheme == "rtsp" else "")
    started = time.monotonic()
    try:
        with pytest.raises(LiveError, match=r"no data within 1\.5 s \(`timeout`\)"):
            run_live(job(url, timeout=1.5), IdentityEngine())
        assert 1.4 < time.monotonic() - started < 4.0
        assert accepted  # it did connect: the silence, not a refusal, is what timed out
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def test_ctrl_c_while_opening_a_silent_peer_is_prompt() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # the kernel completes the handshake; nobody ever answers
        url = f"rtsp://127.0.0.1:{listener.getsockname()[1]}/test"
        interrupt_when(lambda: False, 0.5)
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            run_live(job(url, timeout=5.0), IdentityEngine())
        assert time.monotonic() - started < 1.2
    # The abandoned open gives up at its own timeout and closes what it opened.
    wait_for(lambda: live_threads() == [], 6.0, "the opener to time out")


def test_stop_while_opening_a_silent_peer_is_prompt(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"rtsp://127.0.0.1:{listener.getsockname()[1]}/test"
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        started = time.monotonic()
        summary = run_live(job(url, timeout=5.0, output=tmp_path / "rec.mkv"), IdentityEngine(), stop=stop)
        assert time.monotonic() - started < 1.5
        assert summary.stopped_by == "stop" and summary.error is None and summary.stats["frames_in"] == 0
        assert not summary.recording_written and not (tmp_path / "rec.mkv").exists()
    wait_for(lambda: live_threads() == [], 6.0, "the opener to time out")


def test_realtime_file_plays_at_its_rate_and_ends(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=20, rate=25)
    started = time.monotonic()
    summary = run_live(job(str(clip), realtime=True, output=tmp_path / "rec.mkv"), IdentityEngine())
    took = time.monotonic() - started
    assert summary.error is None and summary.stopped_by.endswith("end of file")
    assert summary.stats["frames_out"] == 20 and summary.stats["dropped"] == 0
    assert 0.7 < took < 5.0  # 20 frames at 25 fps: 0.8 s of playing
    pts = recorded_pts(tmp_path / "rec.mkv")
    assert len(pts) == 20
    steps = [b - a for a, b in itertools.pairwise(pts)]
    assert all(0.02 < s < 0.08 for s in steps), steps  # the file's 40 ms spacing, give or take a scheduler
    assert live_threads() == []


class Recorded(IdentityEngine):
    """An engine slower than the fusion by far, noting when each frame's output is ready."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def run(self, batch):
        time.sleep(0.2)
        out = super().run(batch)
        self.events.append("ready")
        return out


def test_live_temporal_fusion_is_causal_and_adds_no_frames_of_delay(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=6, rate=25)
    events: list[str] = []
    summary = run_live(job(str(clip), realtime=True, output=tmp_path / "rec.mkv", temporal=3, max_latency=5.0),
                       Recorded(events), preview=lambda image: events.append("out"))
    assert summary.error is None and summary.stats["frames_out"] == 6 and summary.stats["dropped"] == 0
    assert len(recorded_pts(tmp_path / "rec.mkv")) == 6
    # The first "ready" is the warm-up call. Frame t leaves once its own output is ready, before
    # frame t+1's is (0.2 s later): a window waiting for a later frame would put it after.
    assert events == ["ready"] + ["ready", "out"] * 6


def test_a_played_file_that_breaks_keeps_every_frame_read_before_it(tmp_path: Path) -> None:
    clip = make_resizing_mjpeg(tmp_path / "clip.avi", frames=20, change_at=13)
    summary = run_live(job(str(clip), realtime=True, output=tmp_path / "rec.mkv"), IdentityEngine())
    assert summary.stopped_by == "error" and "frame 13 is 96x64" in summary.error
    assert len(recorded_pts(tmp_path / "rec.mkv")) == summary.stats["frames_out"] == 13


def test_a_read_error_in_a_played_file_is_an_error_not_its_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk or network filesystem failing under a file; an OS read error cannot be made on demand."""
    real_frames = live_pipeline.frames

    def failing_frames(source):
        for k, frame in enumerate(real_frames(source)):
            if k == 6:
                raise OSError(errno.EIO, "Input/output error")
            yield frame

    monkeypatch.setattr(live_pipeline, "frames", failing_frames)
    clip = make_video(tmp_path / "clip.mp4", frames=20, rate=25)
    summary = run_live(job(str(clip), realtime=True, output=tmp_path / "rec.mkv"), IdentityEngine())
    assert summary.stopped_by == "error" and summary.error == f"{clip}: Input/output error"
    assert len(recorded_pts(tmp_path / "rec.mkv")) == summary.stats["frames_out"] == 6


def test_an_avi_recording_states_the_sources_frame_rate(tmp_path: Path) -> None:
    """The job's 1/90000 clock as AVI's time base would claim 90000 fps."""
    clip = make_video(tmp_path / "clip.mp4", frames=15, rate=25)
    summary = run_live(job(str(clip), realtime=True, output=tmp_path / "rec.avi"), IdentityEngine())
    assert summary.error is None and summary.stats["frames_out"] == 15
    with av.open(str(tmp_path / "rec.avi")) as container:
        video = container.streams.video[0]
        assert video.time_base == Fraction(1, 25) and video.average_rate == 25
        assert len([f for f in container.decode(video)]) == 15


class FailsAt(IdentityEngine):
    """Raises mid-stream, as CUDA running out of memory does."""

    def run(self, batch):
        if self.calls == 4:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        return super().run(batch)


def test_an_engine_error_mid_stream_is_one_line_and_keeps_the_recording(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=10, rate=25)
    summary = run_live(job(str(clip), realtime=True, output=tmp_path / "rec.mkv"), FailsAt())
    assert summary.stopped_by == "error" and summary.error == "CUDA out of memory. Tried to allocate 2.00 GiB"
    assert 0 < len(recorded_pts(tmp_path / "rec.mkv")) == summary.stats["frames_out"] < 10
    assert live_threads() == []


def test_a_signal_while_the_recording_is_finalised_is_ignored(tmp_path: Path, ctrl_c_in_sink_close: None) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=10, rate=25)
    summary = run_live(job(str(clip), realtime=True, output=tmp_path / "rec.mkv"), IdentityEngine())
    assert summary.error is None
    assert len(recorded_pts(tmp_path / "rec.mkv")) == summary.stats["frames_out"] == 10


class FailsSilently(IdentityEngine):
    """Raises an error with no message, as some C extensions do."""

    def run(self, batch):
        if self.calls == 3:
            raise RuntimeError()
        return super().run(batch)


def test_an_error_with_no_message_is_named_by_its_type(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=10, rate=25)
    summary = run_live(job(str(clip), realtime=True, output=tmp_path / "rec.mkv"), FailsSilently())
    assert summary.stopped_by == "error" and summary.error == "RuntimeError"


@contextlib.contextmanager
def second_ctrl_c_recorded() -> Iterator[list[int]]:
    """The CLI's policy without its exit: the first Ctrl-C stops the job, later ones are recorded."""
    forced: list[int] = []

    def first(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, lambda signum, frame: forced.append(signum))
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield forced
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_second_ctrl_c_while_the_recording_is_finalised_reaches_the_callers_handler(
    tmp_path: Path, ctrl_c_in_sink_close: None
) -> None:
    """The documented "a second Ctrl-C forces": finalising must not mask the caller's handler."""
    clip = make_video(tmp_path / "clip.mp4", frames=100, rate=25)
    stats = LiveStats()
    with second_ctrl_c_recorded() as forced:
        interrupt_when(lambda: stats.written >= 3, 10.0)
        summary = run_live(job(str(clip), realtime=True, output=tmp_path / "rec.mkv"), IdentityEngine(), stats)
    assert summary.stopped_by == "SIGINT" and forced == [signal.SIGINT]
    # The handler did not exit, so the recording was still finalised.
    assert len(recorded_pts(tmp_path / "rec.mkv")) == summary.stats["frames_out"] > 0


def test_a_writer_stuck_on_the_restream_is_not_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-stream peer that stops reading blocks its write; the stop waits --timeout for it, not forever."""
    release = threading.Event()
    write = Sink.write

    def stuck_on_the_network(self: Sink, planes, pts: int) -> None:
        if isinstance(self.path, str) and self.frames >= 2:
            release.wait(8.0)
        write(self, planes, pts)

    monkeypatch.setattr(Sink, "write", stuck_on_the_network)
    clip = make_video(tmp_path / "clip.mp4", frames=100, rate=25)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        url = f"udp://127.0.0.1:{peer.getsockname()[1]}"
        stats = LiveStats()
        interrupt_when(lambda: False, 1.5)
        started = time.monotonic()
        summary = run_live(job(str(clip), realtime=True, timeout=1.0, output=tmp_path / "rec.mkv", restream=url),
                           IdentityEngine(), stats)
        took = time.monotonic() - started
        release.set()
    assert summary.stopped_by == "SIGINT" and took < 4.5, took
    assert any("the re-stream to" in w and "did not finish" in w for w in summary.warnings), summary.warnings
    assert len(recorded_pts(tmp_path / "rec.mkv")) >= summary.stats["frames_out"] >= 2
    wait_for(lambda: live_threads() == [], 10.0, "the stuck output thread to end once its write returns")


class SlowAfterWarmUp(IdentityEngine):
    """Fast for the warm-up call, then far slower than the stream."""

    def run(self, batch):
        if self.calls:
            time.sleep(5.0)
        return super().run(batch)


def test_every_frame_in_is_out_dropped_or_in_flight_and_no_recording_is_claimed(tmp_path: Path) -> None:
    """A stop before any frame came out: the counts still add up, and no recording is announced."""
    clip = make_video(tmp_path / "clip.mp4", frames=100, rate=25)
    stats = LiveStats()
    snapshots: list[dict] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            snapshots.append(stats.snapshot())
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    interrupt_when(lambda: stats.decoded >= 15, 10.0)
    try:
        summary = run_live(job(str(clip), realtime=True, output=tmp_path / "rec.mp4"), SlowAfterWarmUp(), stats)
    finally:
        sampling.set()
    s = summary.to_dict()
    assert summary.stopped_by == "SIGINT" and s["frames_out"] == 0 and s["frames_in"] >= 15
    assert s["frames_in"] == s["frames_out"] + s["dropped"] + s["in_flight"] and s["in_flight"] > 0
    assert s["recording_written"] is False and not (tmp_path / "rec.mp4").exists()
    assert snapshots and all(x["frames_in"] == x["frames_out"] + x["dropped"] + x["in_flight"] for x in snapshots)


def test_corrupt_packets_are_skipped_and_counted(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.avi", codec="mjpeg", pix_fmt="yuvj420p", size=(160, 120), frames=30)
    corrupt_jpeg(clip, 15)
    summary = run_live(job(str(clip), realtime=True, output=tmp_path / "rec.mkv"), IdentityEngine())
    assert summary.error is None and summary.stats["corrupt_packets"] == 1 and summary.stats["frames_in"] == 29


# -- against the RTSP server ------------------------------------------------------------------------


@needs_rtsp
def test_reconnects_and_records_both_sides_of_the_gap(server: RtspServer, tmp_path: Path) -> None:
    stats = LiveStats()
    out = tmp_path / "rec.mkv"
    marks: dict[str, float] = {}

    def crash_and_restart() -> None:
        wait_for(lambda: stats.written >= 15, 30, "frames before the crash")
        server.kill()
        marks["killed"] = stats.elapsed
        time.sleep(1.0)
        server.start(pattern="ball")
        marks["restarted"] = stats.elapsed
        written = stats.written
        wait_for(lambda: stats.reconnects >= 1 and stats.written >= written + 15, 30, "frames after the reconnect")

    errors = in_background(crash_and_restart)
    summary = run_live(job(server.url, output=out, backoff_first=0.2), IdentityEngine(), stats)
    if errors:
        raise errors[0]
    assert summary.stopped_by == "SIGINT" and summary.error is None
    assert summary.stats["reconnects"] >= 1
    assert live_threads() == []
    pts = recorded_pts(out)
    assert len(pts) == summary.stats["frames_out"] >= 30
    assert all(b > a for a, b in itertools.pairwise(pts))
    before = [t for t in pts if t < marks["killed"]]
    after = [t for t in pts if t > marks["restarted"]]
    assert len(before) >= 15 and len(after) >= 15
    # The gap is where the stream really was away: a second at least, not squeezed out.
    gap = max(b - a for a, b in itertools.pairwise(pts))
    assert gap >= 0.9


@needs_rtsp
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_stops_on_a_signal_with_exit_0_and_a_playable_recording(
    server: RtspServer, tiny_checkpoint: Path, tmp_path: Path, signum: int,
) -> None:
    out, stats_file = tmp_path / "rec.mp4", tmp_path / "live.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two cores: torch threads would only spin against the others
    process = subprocess.Popen(
        [sys.executable, "-m", "derain", "live", server.url, "-o", str(out), "--weights", str(tiny_checkpoint),
         "--device", "cpu", "--json", str(stats_file), "--timeout", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        def last() -> dict:
            lines = stats_file.read_text().splitlines() if stats_file.exists() else []
            return json.loads(lines[-1]) if lines else {}

        wait_for(lambda: last().get("frames_out", 0) >= 5, 60, "frames out of the CLI")
        process.send_signal(signum)
        started = time.monotonic()
        output, _ = process.communicate(timeout=10)
        assert time.monotonic() - started < 2.0, output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    lines = [json.loads(line) for line in stats_file.read_text().splitlines()]
    assert {"frames_in", "frames_out", "dropped", "reconnects", "latency_ms_p50", "state"} <= set(lines[0])
    final = lines[-1]
    assert final["final"] and final["stopped_by"] == signal.Signals(signum).name
    assert len(recorded_pts(out)) == final["frames_out"] >= 5


@needs_rtsp
def test_slow_engine_drops_to_keep_latency_bounded(server: RtspServer) -> None:
    stats = LiveStats()
    interrupt_when(lambda: stats.written >= 12, 30)
    summary = run_live(job(server.url, max_latency=0.4), SleepEngine(0.15), stats)
    s = summary.stats
    assert summary.stopped_by == "SIGINT"
    assert s["dropped"] > 0 and s["frames_out"] >= 12
    assert s["latency_ms_p99"] <= 400, s
    assert live_threads() == []


@needs_rtsp
def test_every_nth_policy_thins_evenly(server: RtspServer) -> None:
    stats = LiveStats()
    interrupt_when(lambda: stats.written >= 12, 30)
    summary = run_live(job(server.url, max_latency=0.4, drop_policy="every-nth"), SleepEngine(0.1), stats)
    s = summary.stats
    assert s["dropped"] > 0 and s["latency_ms_p99"] <= 400, s


@needs_rtsp
def test_fast_engine_drops_nothing(server: RtspServer) -> None:
    stats = LiveStats()
    interrupt_when(lambda: stats.decoded >= 40, 30)
    summary = run_live(job(server.url, max_latency=1.0), IdentityEngine(), stats)
    s = summary.stats
    assert s["dropped"] == 0 and s["frames_out"] >= 38, s


@needs_rtsp
@pytest.mark.parametrize("scheme", ["udp", "tcp"])
def test_restream_is_watchable(server: RtspServer, scheme: str) -> None:
    """A second client reads the derained stream as MPEG-TS."""
    port = free_port(socket.SOCK_DGRAM if scheme == "udp" else socket.SOCK_STREAM)
    watch_url = f"udp://127.0.0.1:{port}" if scheme == "udp" else f"tcp://127.0.0.1:{port}?listen=1"
    seen: list[tuple[int, int, float]] = []
    errors: list[BaseException] = []
    listening = threading.Event()

    def watch() -> None:
        try:
            listening.set()
            with av.open(watch_url, format="mpegts", timeout=20) as container:
                video = container.streams.video[0]
                for frame in container.decode(video):
                    seen.append((frame.width, frame.height, float(frame.pts * video.time_base)))
                    if len(seen) >= 20:
                        return
        except BaseException as err:
            errors.append(err)

    viewer = threading.Thread(target=watch, daemon=True)
    viewer.start()
    listening.wait(5)
    time.sleep(0.3)  # the viewer's socket is bound before the first packet goes out
    interrupt_when(lambda: len(seen) >= 20 or bool(errors), 40)
    summary = run_live(job(server.url, restream=f"{scheme}://127.0.0.1:{port}"), IdentityEngine())
    viewer.join(5)
    assert not errors, errors
    assert len(seen) >= 20 and {(w, h) for w, h, _ in seen} == {(96, 64)}
    assert summary.warnings == [] and summary.error is None
    times = [t for _, _, t in seen]
    assert all(b > a for a, b in itertools.pairwise(times))


@needs_rtsp
def test_hung_server_is_a_drop_and_a_stop_does_not_wait_for_it(server: RtspServer, tmp_path: Path) -> None:
    """SIGSTOP freezes the server with its connections open: reads time out, the pipeline
    reconnects when it thaws; a stop while the reader waits on the frozen peer is still prompt."""
    stats = LiveStats()
    states: list[str] = []
    stats.on_change(lambda state, detail: states.append(f"{state}: {detail}"))
    result: dict[str, float] = {}

    def freeze_thaw_freeze() -> None:
        wait_for(lambda: stats.written >= 10, 30, "frames before the freeze")
        os.kill(server.process.pid, signal.SIGSTOP)
        wait_for(lambda: stats.state == "reconnecting", 10, "the read timeout")
        time.sleep(1.0)
        os.kill(server.process.pid, signal.SIGCONT)
        written = stats.written
        wait_for(lambda: stats.reconnects >= 1 and stats.written >= written + 10, 30, "frames after the thaw")
        os.kill(server.process.pid, signal.SIGSTOP)
        time.sleep(0.3)  # the reader is now inside a read that will not return for --timeout
        result["interrupted"] = time.monotonic()

    errors = in_background(freeze_thaw_freeze)
    try:
        summary = run_live(job(server.url, timeout=1.5, output=tmp_path / "rec.mkv", backoff_first=0.2), IdentityEngine(), stats)
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    if errors:
        raise errors[0]
    stopped_in = time.monotonic() - result["interrupted"]
    assert summary.stopped_by == "SIGINT" and summary.stats["reconnects"] >= 1
    assert any("no data within the read timeout" in s for s in states), states
    assert stopped_in < 1.5
    assert len(recorded_pts(tmp_path / "rec.mkv")) == summary.stats["frames_out"]
    # The abandoned reader gives up by itself at its read timeout.
    wait_for(lambda: live_threads() == [], 3.0, "the reader to time out")


@needs_rtsp
def test_restream_publishes_over_rtsp(server: RtspServer) -> None:
    """RTSP publish (ANNOUNCE/RECORD) to the server's /publish mount, which counts what arrives."""
    stats = LiveStats()
    interrupt_when(lambda: stats.written >= 60, 30)
    summary = run_live(job(server.url, restream=f"rtsp://127.0.0.1:{server.port}/publish"), IdentityEngine(), stats)
    assert summary.error is None and summary.warnings == []
    assert server.received(50, 5) >= 50


@needs_rtsp
def test_gives_up_after_reconnect_max_with_a_clear_message(server: RtspServer, tmp_path: Path) -> None:
    stats = LiveStats()

    def crash() -> None:
        wait_for(lambda: stats.written >= 5, 30, "frames before the crash")
        server.kill()

    threading.Thread(target=crash, daemon=True).start()
    summary = run_live(job(server.url, output=tmp_path / "rec.mkv", reconnect_max=2, backoff_first=0.1), IdentityEngine(), stats)
    assert summary.stopped_by == "error"
    assert "gave up after 2 reconnect tries (`reconnect_max`); last:" in summary.error
    assert "connection refused" in summary.error
    assert len(recorded_pts(tmp_path / "rec.mkv")) == summary.stats["frames_out"] >= 5
    assert live_threads() == []


def test_a_source_that_keeps_dropping_uses_up_its_tries(server: RtspServer, tmp_path: Path) -> None:
    """It comes back at once each time, only to drop again within a second: the tries add up
    instead of starting over, so the job ends rather than reconnecting forever."""
    stats = LiveStats()
    done = threading.Event()

    def flap() -> None:
        for drop in range(3):
            wait_for(lambda d=drop: done.is_set() or (stats.reconnects >= d and stats.state == "live"), 30, "the source back")
            if done.is_set():
                return
            flowing = stats.written
            wait_for(lambda f=flowing: stats.written >= f + 3, 30, "frames")
            server.kill()
            server.start()
        # Still reconnecting after a third drop: the tries started over; stop the job to fail the test.
        if not done.wait(5):
            _thread.interrupt_main()

    flapping = threading.Thread(target=flap, daemon=True)
    flapping.start()
    try:
        summary = run_live(job(server.url, output=tmp_path / "rec.mkv", reconnect_max=2, backoff_first=0.1), IdentityEngine(), stats)
    finally:
        done.set()
        flapping.join(30)
    assert summary.stopped_by == "error" and "gave up after 2 reconnect tries (`reconnect_max`)" in summary.error
    # A restarted server that is still starting (a loaded machine) refuses a try as well, and that
    # try counts against --reconnect-max too: two successful reconnects, or one and a refusal.
    assert 1 <= summary.stats["reconnects"] <= 2
    assert len(recorded_pts(tmp_path / "rec.mkv")) == summary.stats["frames_out"]
    assert live_threads() == []


def test_restream_with_nothing_listening_is_refused_before_any_work(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=5)
    started = time.monotonic()
    with pytest.raises(LiveError, match=r"restream='tcp://127\.0\.0\.1:\d+': connection refused"):
        run_live(job(str(clip), realtime=True, output=tmp_path / "rec.mkv", restream=f"tcp://127.0.0.1:{free_port()}"), IdentityEngine())
    assert time.monotonic() - started < 3.0
    assert not (tmp_path / "rec.mkv").exists()
    with pytest.raises(LiveError, match="restream='http://x': give rtsp://"):
        run_live(job(str(clip), realtime=True, restream="http://x"), IdentityEngine())


class Refused(Exception):
    pass


def test_refusal_before_the_first_frame_leaves_no_recording(tmp_path: Path) -> None:
    """Like the accuracy guard refusing reduced precision: no empty file stands in the next run's way
    (the container writes nothing before its first packet)."""
    clip = make_video(tmp_path / "clip.mp4", frames=5)

    @contextlib.contextmanager
    def refuse(_source: object) -> Iterator[None]:
        raise Refused("reduced precision refused")
        yield

    for _ in range(2):
        with pytest.raises(Refused):
            run_live(job(str(clip), realtime=True, output=tmp_path / "rec.mkv"), IdentityEngine(), on_start=refuse)
        assert not (tmp_path / "rec.mkv").exists()
    assert live_threads() == []


def test_setup_failure_closes_the_restream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    def no_memory(*_args: object, **_kw: object) -> None:
        raise MemoryError("no room for the batch buffers")

    monkeypatch.setattr(live_pipeline, "InferenceStage", no_memory)
    clip = make_video(tmp_path / "clip.mp4", frames=5)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        restream = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(MemoryError):
            run_live(job(str(clip), realtime=True, restream=restream), IdentityEngine())
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(2.0)
            while conn.recv(65536):  # whatever was flushed, then end of stream: the sink was closed
                pass
