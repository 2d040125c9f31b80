"""`derain batch` / `derain.batch` on a real local Ray: a mixed folder with a corrupt file, a
rerun that skips, --force, a worker SIGKILLed mid-file, Ctrl-C; and the planning without Ray."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from videos import make_video, picture, video_info

import derain
from derain.batching import RECORD_NAME, BatchProgress, plan_batch
from derain.cli import main

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed: pip install 'derain[ray]'")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray for the module: every job here joins it instead of starting its own."""
    import ray
    import stand_ins

    # The stand-in engines travel to the workers by value: the workers cannot import tests/.
    ray.cloudpickle.register_pickle_by_value(stand_ins)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (the OS's picks, all held until every one is picked)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for held in sockets:
            held.bind(("127.0.0.1", 0))
        return [held.getsockname()[1] for held in sockets]


def kill_session(session: int) -> None:
    """SIGKILL every process of a session: Ray's daemons and workers stay in the session of the
    `ray start` that made them, and no other process is in it."""
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            if os.getsid(int(entry.name)) == session:
                os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture(scope="module")
def head_node() -> Iterator[tuple[str, Path, dict[str, str], int | None]]:
    """A Ray cluster started as a user starts one, `ray start --head` on 127.0.0.1, that meets no
    other Ray on the machine: its own temporary folder, ports and token. Its processes are killed
    afterwards, whatever the tests did. Gives its address, its temporary folder, the
    environment (token) a driver joins it with, and its Ray Client port (None without ray[client])."""
    # Short: Ray's sockets lie below it, and a socket's path has at most 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
    port, client, *others = free_ports(9)
    serves_clients = importlib.util.find_spec("grpc") is not None  # ray start refuses a client port without it
    options = ("--dashboard-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
               "--runtime-env-agent-port", "--node-manager-port", "--object-manager-port")
    argv = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
            "--num-cpus", "2", "--include-dashboard", "false", "--min-worker-port", "0", "--max-worker-port", "0",
            *(arg for pair in zip(options, map(str, others)) for arg in pair), "--temp-dir", str(root), "--disable-usage-stats",
            *(["--ray-client-server-port", str(client)] if serves_clients else [])]
    with open(root / "start.log", "w+") as log:
        starter = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            assert starter.wait(timeout=180) == 0, (log.seek(0), log.read()[-3000:])[1]
            yield f"127.0.0.1:{port}", root, env, client if serves_clients else None
        finally:
            starter.kill()
            kill_session(starter.pid)
            shutil.rmtree(root, ignore_errors=True)


def mixed_folder(root: Path) -> Path:
    """Two videos (one in a subfolder), an image and a corrupt video."""
    (root / "sub").mkdir(parents=True)
    make_video(root / "a.mp4", frames=6)
    make_video(root / "sub" / "b.mkv", frames=4, rate=10)
    cv2.imwrite(str(root / "sub" / "c.jpg"), picture(64, 48, 3)[..., ::-1])
    (root / "bad.mp4").write_bytes(b"this is not a video")
    return root


def seconds(path: Path) -> list[float]:
    info = video_info(path)
    return [float(Fraction(pts) * info["time_base"]) for pts in info["pts"]]


def no_partial_files(outdir: Path) -> bool:
    return not [p for p in outdir.rglob("*") if ".part" in p.name]


@needs_ray
@pytest.mark.slow
def test_a_mixed_folder_then_a_rerun_that_skips_then_force(local_ray: None, tiny_checkpoint: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    inputs = mixed_folder(tmp_path / "in")
    out, summary = tmp_path / "out", tmp_path / "summary.json"
    argv = ["batch", str(inputs), "-o", str(out), "--weights", str(tiny_checkpoint), "--device", "cpu", "--workers", "2",
            "--json", str(summary)]

    assert main(argv) == 1
    report = json.loads(summary.read_text())
    assert (report["done"], report["failed"], report["skipped"]) == (3, 1, 0)
    assert [w["threads"] for w in report["workers"]] == [1, 1]  # two workers share the two CPUs of the node
    status = {Path(f["input"]).name: f for f in report["files"]}
    assert status["bad.mp4"]["status"] == "failed" and "bad.mp4" in status["bad.mp4"]["error"]
    assert "bad.mp4" in capsys.readouterr().err
    for name, output in (("a.mp4", out / "a.mp4"), ("b.mkv", out / "sub" / "b.mkv")):
        source = inputs / ("sub" if name == "b.mkv" else "") / name
        assert status[name]["output"] == str(output) and status[name]["frames"] == len(video_info(source)["pts"])
        assert seconds(output) == seconds(source)
    assert cv2.imread(str(out / "sub" / "c.png")).shape == (48, 64, 3)
    assert not (out / "bad.mp4").exists() and no_partial_files(out)
    lines = [json.loads(line) for line in (out / RECORD_NAME).read_text().splitlines()]
    assert sorted(line["status"] for line in lines) == ["done", "done", "done", "failed"]

    assert main(argv) == 1  # the corrupt file is tried again, the rest is skipped
    report = json.loads(summary.read_text())
    assert (report["done"], report["failed"], report["skipped"]) == (0, 1, 3)

    assert main([*argv, "--force"]) == 1
    report = json.loads(summary.read_text())
    assert (report["done"], report["failed"], report["skipped"]) == (3, 1, 0)
    assert no_partial_files(out)


@needs_ray
@pytest.mark.slow
def test_a_worker_killed_mid_file_has_its_file_redone(local_ray: None, tmp_path: Path) -> None:
    from stand_ins import BuildKiller

    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.mp4", "b.mkv"):
        make_video(inputs / name, frames=8)
    marker = tmp_path / "killed-once"

    report = derain.batch([inputs], tmp_path / "out", engine=BuildKiller(str(marker)), workers=2)

    assert marker.exists()  # a worker did die
    assert (report.done, report.failed) == (2, 0)
    assert sorted(r.attempts for r in report.files) == [1, 2]
    assert len(report.workers) == 3  # the replacement
    for name in ("a.mp4", "b.mkv"):
        assert seconds(tmp_path / "out" / name) == seconds(inputs / name)
    assert no_partial_files(tmp_path / "out")


@needs_ray
@pytest.mark.slow
def test_a_replacement_that_cannot_start_leaves_no_partial_file(local_ray: None, tmp_path: Path) -> None:
    """A worker dies mid-file while the other is mid-file too, and its replacement cannot build
    its engine: the job ends with the error, both files recorded as interrupted, no temporary left."""
    from stand_ins import NoReplacement

    inputs, out, marks = tmp_path / "in", tmp_path / "out", tmp_path / "marks"
    inputs.mkdir()
    marks.mkdir()
    for name in ("a.mp4", "b.mkv"):
        make_video(inputs / name, frames=90)

    with pytest.raises(derain.EngineError, match=r"worker w\d\.2: stand-in: no engine for a replacement"):
        derain.batch([inputs], out, engine=NoReplacement(str(marks), str(out)), workers=2)

    assert (marks / "saw-part").exists()  # the other worker had written part of its file
    assert [p.name for p in out.iterdir()] == [RECORD_NAME] and no_partial_files(out)
    lines = [json.loads(line) for line in (out / RECORD_NAME).read_text().splitlines()]
    assert sorted((Path(line["input"]).name, line["status"]) for line in lines) == [("a.mp4", "interrupted"), ("b.mkv", "interrupted")]
    assert all("no engine for a replacement" in line["error"] for line in lines)


@needs_ray
@pytest.mark.slow
def test_a_job_removes_the_temporaries_a_killed_job_left(local_ray: None, tmp_path: Path) -> None:
    """A job killed outright (SIGKILL) cleans up nothing; the next one removes its temporaries
    (a video's, an image's) of the files it has to do before any worker starts (here it is
    stopped before any file)."""
    from stand_ins import IdentityEngine

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    make_video(inputs / "a.mp4", frames=2)
    cv2.imwrite(str(inputs / "c.jpg"), picture(64, 48, 3)[..., ::-1])
    out.mkdir()
    (out / ".a.part.mp4").write_bytes(b"the start of a video")
    (out / ".c.png.0a1b2c3d").write_bytes(b"the start of a PNG")  # derain.image's temporary name for c.png
    stop = threading.Event()
    stop.set()
    report = derain.batch([inputs], out, engine=IdentityEngine, workers=1, stop=stop)
    assert report.interrupted == "stopped" and report.files == []
    assert list(out.iterdir()) == []


@needs_ray
@pytest.mark.slow
def test_ctrl_c_cancels_the_running_files_and_a_rerun_does_them(local_ray: None, tiny_checkpoint: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    make_video(inputs / "long.mp4", frames=60)

    def interrupt_once_running(progress: BatchProgress) -> None:
        if progress.running:
            raise KeyboardInterrupt  # as Ctrl-C arrives in the loop that hands out files

    report = derain.batch([inputs], tmp_path / "out", weights=tiny_checkpoint, device="cpu", workers=1,
                          on_progress=interrupt_once_running)
    assert report.interrupted == "SIGINT" and report.cancelled == [str(inputs / "long.mp4")]
    assert report.workers[0]["threads"] == 2  # one worker holds both CPUs
    assert [r.status for r in report.files] == ["interrupted"]
    assert not (tmp_path / "out" / "long.mp4").exists() and no_partial_files(tmp_path / "out")

    again = derain.batch([inputs], tmp_path / "out", weights=tiny_checkpoint, device="cpu", workers=1)
    assert (again.done, again.skipped) == (1, 0) and len(video_info(tmp_path / "out" / "long.mp4")["pts"]) == 60


@needs_ray
@pytest.mark.slow
def test_temporal_fuses_a_batchs_videos_as_derain_video_does(local_ray: None, tiny_checkpoint: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    source = make_video(inputs / "a.mp4", frames=8)
    cv2.imwrite(str(inputs / "b.jpg"), picture(64, 48, 3)[..., ::-1])
    engine = ["--weights", str(tiny_checkpoint), "--device", "cpu", "--crf", "0"]  # lossless: the frames as derained
    argv = ["batch", str(inputs), "-o", str(out), "--workers", "1", *engine]

    assert main([*argv, "--temporal", "3"]) == 0
    assert "--temporal 3 fuses the frames of each video; the 1 image(s) are derained on their own" in capsys.readouterr().err
    for k in (3, 1):
        assert main(["video", str(source), "-o", str(tmp_path / f"video{k}.mp4"), "--temporal", str(k), *engine]) == 0
    batched, fused, alone = (video_info(path)["planes"] for path in (out / "a.mp4", tmp_path / "video3.mp4", tmp_path / "video1.mp4"))
    assert len(batched) == 8 and all(np.array_equal(b, f) for frame, other in zip(batched, fused) for b, f in zip(frame, other))
    assert any(not np.array_equal(b, a) for frame, other in zip(batched, alone) for b, a in zip(frame, other))  # it did fuse
    assert cv2.imread(str(out / "b.png")).shape == (48, 64, 3)

    assert main([*argv, "--json", str(tmp_path / "plain.json")]) == 0  # the fusion changes a video's output only
    assert {Path(f["input"]).name: f["status"] for f in json.loads((tmp_path / "plain.json").read_text())["files"]} == {
        "a.mp4": "done", "b.jpg": "skipped"}


def test_outputs_mirror_the_inputs_and_lists_are_read(tmp_path: Path) -> None:
    inputs = mixed_folder(tmp_path / "in")
    (tmp_path / "list.txt").write_text("# two inputs\nin/a.mp4\n\nin/sub\n")
    out = tmp_path / "out"
    items = plan_batch([f"@{tmp_path / 'list.txt'}", inputs / "bad.mp4"], out)
    assert [(i.input.name, i.output, i.kind) for i in items] == [
        ("a.mp4", out.absolute() / "a.mp4", "video"),
        ("b.mkv", out.absolute() / "b.mkv", "video"),
        ("c.jpg", out.absolute() / "c.png", "image"),
        ("bad.mp4", out.absolute() / "bad.mp4", "video"),
    ]


def test_inputs_that_cannot_be_planned_are_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(derain.InputError, match=r"notes\.txt: not a video"):
        plan_batch([tmp_path / "notes.txt"], tmp_path / "out")
    cv2.imwrite(str(tmp_path / "x.jpg"), picture(64, 48, 0))
    cv2.imwrite(str(tmp_path / "x.png"), picture(64, 48, 0))
    with pytest.raises(derain.InputError, match=r"would both be written to .*x\.png"):
        plan_batch([tmp_path / "x.jpg", tmp_path / "x.png"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing.mp4: no such file"):
        plan_batch([tmp_path / "missing.mp4"], tmp_path / "out")
    assert main(["batch", str(tmp_path / "notes.txt"), "-o", str(tmp_path / "out")]) == 2
    make_video(tmp_path / "a.mp4", frames=2)
    assert main(["batch", str(tmp_path / "a.mp4"), "-o", str(tmp_path / "out"), "--weights", str(tmp_path / "nope.safetensors")]) == 2
    assert not (tmp_path / "out").exists()  # refused before Ray starts or anything is written


def test_without_ray_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_video(tmp_path / "a.mp4", frames=2)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(derain.DerainError, match=r"pip install 'derain\[ray\]'"):
        derain.batch([tmp_path / "a.mp4"], tmp_path / "out")


@needs_ray
def test_an_address_ray_cannot_use_is_refused_in_one_line_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    make_video(tmp_path / "a.mp4", frames=2)
    out = tmp_path / "out"
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again: nothing answers there
    assert main(["batch", str(tmp_path / "a.mp4"), "-o", str(out), "--address", f"127.0.0.1:{port}"]) == 2
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "grpc", None)  # Ray without ray[client]: import grpc raises ImportError
    with pytest.raises(derain.DerainError, match=r"^address='ray://127\.0\.0\.1:\d+': Ray Client \(ray://\) needs an extra package: "
                                                 r"pip install 'ray\[client\]'$"):
        derain.batch([tmp_path / "a.mp4"], out, address=f"ray://127.0.0.1:{port}")
    assert not out.exists()


@needs_ray
@pytest.mark.slow
@pytest.mark.parametrize(("sig", "to_group", "status"), [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)])
def test_a_signal_stops_the_job_and_leaves_a_consistent_record(sig: signal.Signals, to_group: bool, status: int,
                                                                tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The command with its embedded Ray: Ctrl-C at a terminal reaches the whole process group
    (Ray's processes too), SIGTERM only the command."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    make_video(inputs / "long.mp4", frames=400)
    argv = ["batch", str(inputs), "-o", str(out), "--weights", str(tiny_checkpoint), "--device", "cpu", "--workers", "1"]
    job = subprocess.Popen([sys.executable, "-m", "derain", *argv], start_new_session=True, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / ".long.part.mp4").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    (os.killpg if to_group else os.kill)(job.pid, sig)
    stdout, stderr = job.communicate(timeout=120)

    assert job.returncode == status, stderr
    assert f"cancelled: {inputs / 'long.mp4'}" in stderr and "0 done" in stdout
    assert [p.name for p in out.iterdir()] == [RECORD_NAME]
    [line] = [json.loads(text) for text in (out / RECORD_NAME).read_text().splitlines()]
    assert line["status"] == "interrupted"


@needs_ray
@pytest.mark.slow
def test_a_job_spreads_over_the_nodes_of_a_cluster(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Two Ray nodes of one CPU each (ray.cluster_utils.Cluster, in a process of its own so as not
    to meet this module's Ray): --address joins them, one worker lands on each."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mkv"):
        make_video(inputs / name, frames=4)
    code = f"""
import json, ray, derain
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
cluster.add_node(num_cpus=1)
try:
    report = derain.batch([{str(inputs)!r}], {str(out)!r}, weights={str(tiny_checkpoint)!r}, device="cpu", workers=2,
                          address=cluster.address)
    print(json.dumps(report.to_dict()))
finally:
    ray.shutdown()
    cluster.shutdown()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["done"], report["failed"]) == (3, 0)
    assert len({worker["node"] for worker in report["workers"]}) == 2
    assert all(len(video_info(out / name)["pts"]) == 4 for name in ("a.mp4", "b.mp4", "c.mkv"))


@needs_ray
@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the test cluster's processes are found in /proc")
@pytest.mark.timeout(600)  # a Ray start and two jobs, each given minutes on a loaded 2-core machine
def test_a_job_joins_a_cluster_started_with_ray_start(head_node: tuple[str, Path, dict[str, str], int | None], tiny_checkpoint: Path,
                                                      tmp_path: Path) -> None:
    """`derain batch --address HOST:PORT`, then `--address auto` with RAY_ADDRESS: the workers ran
    on the cluster's one node (Ray names files of its session after the node), not an embedded Ray's."""
    address, root, env, _ = head_node
    session = [path.name for path in (root / "session_latest").iterdir()]
    inputs, out, summary = mixed_folder(tmp_path / "in"), tmp_path / "out", tmp_path / "summary.json"
    argv = [sys.executable, "-m", "derain", "batch", str(inputs), "-o", str(out), "--weights", str(tiny_checkpoint), "--device", "cpu",
            "--json", str(summary)]
    for join, workers, environment in ((["--address", address], "2", env), (["--address", "auto", "--force"], "1", {**env, "RAY_ADDRESS": address})):
        done = subprocess.run([*argv, *join, "--workers", workers], env=environment, capture_output=True, text=True, timeout=200)
        assert done.returncode == 1, done.stderr[-3000:]  # bad.mp4 fails
        report = json.loads(summary.read_text())
        assert (report["done"], report["failed"], report["skipped"]) == (3, 1, 0)
        assert len(report["workers"]) == int(workers)
        assert all(any(name.endswith(f"_{worker['node']}") for name in session) for worker in report["workers"])
        for name in ("a.mp4", "sub/b.mkv"):
            assert len(video_info(out / name)["pts"]) == len(video_info(inputs / name)["pts"])
        assert cv2.imread(str(out / "sub" / "c.png")).shape == (48, 64, 3)
        assert not (out / "bad.mp4").exists() and no_partial_files(out)


@needs_ray
@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the test cluster's processes are found in /proc")
@pytest.mark.skipif(importlib.util.find_spec("grpc") is None, reason="Ray Client is not installed: pip install 'ray[client]'")
@pytest.mark.timeout(600)
def test_a_job_joins_a_cluster_through_ray_client(head_node: tuple[str, Path, dict[str, str], int | None], tiny_checkpoint: Path,
                                                  tmp_path: Path) -> None:
    _, _, env, client = head_node
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name in ("a.mp4", "b.mkv"):
        make_video(inputs / name, frames=4)
    argv = ["batch", str(inputs), "-o", str(out), "--weights", str(tiny_checkpoint), "--device", "cpu", "--workers", "1",
            "--address", f"ray://127.0.0.1:{client}"]
    done = subprocess.run([sys.executable, "-m", "derain", *argv], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 done, 0 failed" in done.stdout
    assert all(len(video_info(out / name)["pts"]) == 4 for name in ("a.mp4", "b.mkv")) and no_partial_files(out)
