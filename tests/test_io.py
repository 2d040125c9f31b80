"""The video I/O layer on its own: decode, encode, remux and live sources, on real files.

No torch and no engine here: CI also runs this file on the newest Python with the newest PyAV
(tests/newest-pyav.sh), where a CPU build of torch is not at hand. The frames go from the
decoder's planes straight back to the encoder, as `derain video` does around the model.
"""

from __future__ import annotations

import socket
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from videos import make_video, remux, video_info

from derain.stream.decode import InputError, frames, open_source
from derain.stream.encode import EncodeOptions, Sink
from derain.stream.sources import SourceUnavailable, open_live, parse_source

LOSSLESS = EncodeOptions(crf=0)
PYAV = int(av.__version__.split(".")[0])


def copy_through(src: Path, dst: Path, options: EncodeOptions = LOSSLESS, start: float = 0.0,
                 duration: float | None = None) -> int:
    """Decode `src` and encode every frame's planes unchanged into `dst`; the frame count."""
    source = open_source(src, start, duration)
    try:
        sink = Sink(dst, source, options)
        for frame in frames(source):
            sink.write(frame.planes, frame.pts)
        sink.close()
    finally:
        source.close()
    return sink.frames


def test_h264_with_aac_keeps_frames_timestamps_and_audio(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", audio="aac", frames=12)
    assert copy_through(src, tmp_path / "out.mp4") == 12
    inp, out = video_info(src), video_info(tmp_path / "out.mp4")
    assert out["pts"] == inp["pts"] and out["time_base"] == inp["time_base"]
    assert out["audio"] == inp["audio"] and len(inp["audio"]) > 5
    for a, b in zip(inp["planes"], out["planes"]):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_timing_comes_back_as_fractions(tmp_path: Path) -> None:
    """PyAV 19 returns av.AVRational (0/1 when unset) where older releases gave Fraction or None."""
    source = open_source(make_video(tmp_path / "in.mkv", rate=30, frames=3))
    try:
        assert type(source.time_base) is Fraction and type(source.rate) is Fraction
        assert source.rate == 30
    finally:
        source.close()


def test_variable_frame_rate_and_mpeg_ts_start(tmp_path: Path) -> None:
    pts = [0, 40, 80, 200, 240, 400, 440, 480]
    src = make_video(tmp_path / "vfr.mkv", pts=pts, frames=len(pts), time_base=Fraction(1, 1000))
    copy_through(src, tmp_path / "out.mkv")
    assert video_info(tmp_path / "out.mkv")["pts"] == pts
    ts = remux(make_video(tmp_path / "in.mp4", frames=25, audio="aac"), tmp_path / "in.ts", shift=600)
    assert copy_through(ts, tmp_path / "cut.mkv", start=0.4, duration=0.4) == 10


def test_rotation_aspect_ratio_and_colour_tags(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", rotation=90, color_range=2, colorspace=1, frames=4)
    with av.open(str(src)) as container:
        assert container.streams.video[0].sample_aspect_ratio in (None, 0, Fraction(1, 1))
    copy_through(src, tmp_path / "out.mp4")
    info = video_info(tmp_path / "out.mp4")
    assert info["rotation"] == 90 and (info["color_range"], info["colorspace"]) == (2, 1)


def test_avi_frame_slots_and_matroska_attachments(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mkv", frames=5, attachments={"font.ttf": ("font/ttf", b"\x00\x01font")})
    copy_through(src, tmp_path / "out.mkv")
    with av.open(str(tmp_path / "out.mkv")) as out:
        (attachment,) = [s for s in out.streams if s.type == "attachment"]
        assert bytes(attachment.data) == b"\x00\x01font"
    # MP4's 1/12800 clock as AVI's time base would claim 12800 fps.
    copy_through(make_video(tmp_path / "in.mp4", frames=12), tmp_path / "out.avi", EncodeOptions())
    out = video_info(tmp_path / "out.avi")
    assert out["time_base"] == Fraction(1, 25) and out["pts"] == list(range(12))


def latin1_title(path: Path) -> Path:
    """A clip whose container and audio stream carry a Latin-1 title, as old muxers wrote them."""
    plain = make_video(path.with_suffix(".plain.mp4"), audio="aac", frames=3)
    # PyAV 19 writes tags as UTF-8 with surrogateescape, so a lone surrogate is the raw byte 0xE9.
    title, options = ("Caf\udce9", {}) if PYAV >= 19 else ("Caf\u00e9", {"metadata_encoding": "latin-1"})
    with av.open(str(plain)) as inp, av.open(str(path), "w", **options) as out:
        out.metadata["title"] = title
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        streams[1].metadata["title"] = title
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    assert b"Caf\xe9" in path.read_bytes()
    return path


def test_tags_in_another_encoding_than_utf8_open_and_are_copied(tmp_path: Path) -> None:
    """PyAV < 19 failed the whole open on such a tag unless told to replace; 19 dropped that option."""
    src = latin1_title(tmp_path / "latin1.mkv")
    assert copy_through(src, tmp_path / "out.mkv") == 3
    audio = [[data for _, data in video_info(path)["audio"]] for path in (tmp_path / "out.mkv", tmp_path / "latin1.plain.mp4")]
    assert audio[0] == audio[1]
    # PyAV 19 keeps the bytes as they were; before it, the undecodable byte became U+FFFD.
    kept = b"Caf\xe9" if PYAV >= 19 else "Caf\ufffd".encode()
    assert (tmp_path / "out.mkv").read_bytes().count(kept) == 2  # the container's title and the audio's


def test_not_a_video_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(InputError, match=r"notes\.mp4: cannot be read as a video"):
        open_source(bad)


def test_live_sources_open_with_timeouts_and_report_refusals(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mkv", frames=4)
    source = open_live(parse_source(str(src), timeout=5.0, realtime=True), timeout=5.0)
    try:
        assert sum(1 for _ in frames(source)) == 4
    finally:
        source.close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SourceUnavailable, match="connection refused"):
        open_live(parse_source(f"rtsp://127.0.0.1:{port}/x", timeout=2.0), timeout=2.0)


def test_the_io_layer_imports_without_torch() -> None:
    """What lets this file run where no CPU build of torch is at hand (tests/newest-pyav.sh)."""
    import subprocess
    import sys

    code = "import sys, derain.stream.decode, derain.stream.encode, derain.stream.sources; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
