"""`--display`: a live OpenCV window of the output, fed without ever slowing the encoder."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np


def display_available() -> str | None:
    """None when a window can be opened here, else why not."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display here ($DISPLAY is not set)"
    return None


class Preview:
    """Shows the latest frame in a window; frames that arrive while one is drawn are skipped
    (it is a preview: the file still gets every frame). Closing the window or pressing q stops
    showing frames, not the job."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._latest: np.ndarray | None = None
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="derain-display", daemon=True)
        self._thread.start()

    def __call__(self, image: np.ndarray) -> None:
        with self._ready:
            self._latest = image
            self._ready.notify()

    def _loop(self) -> None:
        import cv2

        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
            while not self._closed:
                with self._ready:
                    self._ready.wait(0.1)
                    image, self._latest = self._latest, None
                if image is not None:
                    cv2.imshow(self.title, image)
                key = cv2.waitKey(1) & 0xFF
                if key in (ord("q"), 27) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                    break
        except cv2.error:
            pass  # a display that went away ends the preview, never the job
        finally:
            self._closed = True
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=1.0)
