"""What the file and live pipelines share: their threads, the queues between them, how a job
stops, and how its outputs are finalised whatever stopped it.

A job runs its main stage (inference) on the calling thread, so that Ctrl-C reaches it, and
every other stage on a `Worker`. `Runtime.run` starts the workers, turns however the main
stage ended into an `Outcome`, then sets the stop and hands over to the job's finishing step
with signals under control: a Ctrl-C in the middle of a muxer's trailer leaves a file that
no player opens.
"""

from __future__ import annotations

import contextlib
import queue
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import numpy as np

from derain.models.errors import DerainError
from derain.stream.encode import Sink

END = object()  # the last item a queue carries

# Errors in the middle of a job that end it with a message rather than a traceback.
MIDFILE_ERRORS = (DerainError, av.error.FFmpegError, RuntimeError, OSError, ValueError)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the job finalises its output as on Ctrl-C."""


def message(err: BaseException) -> str:
    """One line for a status or warning: the first line of the error, its type when it has no text."""
    text = re.sub(r"^\[Errno -?\d+\] ", "", str(err)).strip() or type(err).__name__
    return text.splitlines()[0]


def put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put unless the job is stopping; False if it stopped first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def get(q: queue.Queue, stop: threading.Event) -> object:
    """The next item, or END once the job is stopping."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return END


def join(thread: threading.Thread, timeout: float | None = None) -> bool:
    """Wait for `thread` up to `timeout` seconds (None: for good); whether it has ended. The
    wait is sliced, so that a signal handler runs meanwhile."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while thread.is_alive():
        left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
        if left <= 0:
            return False
        thread.join(left)
    return True


class Worker(threading.Thread):
    """A stage thread that records its exception and stops the job instead of dying silently."""

    def __init__(self, name: str, body: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.body, self.stop = body, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.body()
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            self.error = err
            self.stop.set()


@dataclass
class Outcome:
    """How the main stage ended: a signal, a failure, or neither (the input ran out)."""

    signal: str | None = None  # "SIGINT" or "SIGTERM"
    failure: BaseException | None = None
    started: bool = False  # past the caller's start context: frames may have flowed


class Runtime:
    """The stop event and worker threads of one job."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.workers: list[Worker] = []

    def worker(self, name: str, body: Callable[[], None]) -> Worker:
        thread = Worker(name, body, self.stop)
        self.workers.append(thread)
        return thread

    def start(self) -> None:
        for thread in self.workers:
            thread.start()

    def run(self, context: contextlib.AbstractContextManager, main: Callable[[], None],
            finish: Callable[[Outcome], None], second_sigint_forces: bool = False) -> Outcome:
        """Run `main` (which starts the workers when it is ready for them) inside `context`;
        then stop and `finish`, whatever ended `main`.

        `finish` runs with Ctrl-C and SIGTERM ignored; with `second_sigint_forces`, a job that
        a Ctrl-C stopped leaves SIGINT to the caller's handler while it finishes, for callers
        that document a second Ctrl-C as forcing the stop.
        """
        outcome = Outcome()
        try:
            with context:
                outcome.started = True
                main()
        except KeyboardInterrupt:
            outcome.signal = "SIGINT"
        except Terminated:
            outcome.signal = "SIGTERM"
        except BaseException as err:  # noqa: BLE001 - finish first, then the caller decides
            outcome.failure = err
        with signals_deferred(keep_sigint=second_sigint_forces and outcome.signal == "SIGINT"):
            self.stop.set()
            finish(outcome)
        return outcome

    def end_output(self, results: queue.Queue, writer: Worker) -> None:
        """The main stage is done: let the output thread write what is queued, then end."""
        put(results, END, self.stop)
        join(writer)

    def error(self) -> BaseException | None:
        """The first error a worker died of."""
        return next((thread.error for thread in self.workers if thread.error is not None), None)


@contextlib.contextmanager
def signals_deferred(keep_sigint: bool = False) -> Iterator[None]:
    """Ctrl-C and SIGTERM are ignored while the output is finalised: a second Ctrl-C there would
    leave a file without its index (an MP4 with no moov), which no player opens. With
    `keep_sigint`, SIGINT keeps whatever handler the caller installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGTERM,) if keep_sigint else (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class SharedSink:
    """A sink that the output thread writes and the finishing step closes.

    A close never lands in the middle of a write. A write stuck past the closer's patience (a
    network peer that stopped reading) is not waited for: the sink is then closed by the
    writing thread as soon as its write returns.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._state = threading.Condition()
        self._writing = False
        self._closed = False
        self._abandoned = False

    @property
    def path(self) -> object:
        return self.sink.path

    @property
    def frames(self) -> int:
        return self.sink.frames

    def write(self, planes: list[np.ndarray], pts: int) -> bool:
        """Write one frame; False when the sink was closed already."""
        with self._state:
            if self._closed:
                return False
            self._writing = True
        try:
            self.sink.write(planes, pts)
        finally:
            with self._state:
                self._writing = False
                self._state.notify_all()
                abandoned = self._abandoned
            if abandoned:
                with contextlib.suppress(Exception):
                    self._close()
        return True

    def close(self, patience: float | None = None) -> bool:
        """Finalise the sink once no write is under way; False if one still was after
        `patience` seconds (None: wait for it)."""
        with self._state:
            if not self._state.wait_for(lambda: not self._writing, patience):
                self._abandoned = True
                return False
        self._close()
        return True

    def _close(self) -> None:
        with self._state:
            if self._closed:
                return
            self._closed = True
        self.sink.close()
