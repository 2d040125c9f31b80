"""A small RTSP server for the live tests, built on GStreamer's RTSP server.

Run it with the system interpreter (`/usr/bin/python3 tests/rtsp_server.py --port N`): its
`gi` bindings are not importable from a virtualenv. It serves a live H.264 test pattern at
rtsp://127.0.0.1:N/test, and takes a published H.264 stream (RTSP RECORD) at /publish,
printing "received K" for every 10th frame it gets. It prints "ready" once it listens and
stops on SIGTERM or SIGINT.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402  (after require_version, as gi wants)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pattern", default="smpte", help="videotestsrc pattern, to tell runs apart")
    parser.add_argument("--size", default="96x64")
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern={args.pattern} "
        f"! video/x-raw,width={width},height={height},framerate={args.fps}/1 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)

    record = GstRtspServer.RTSPMediaFactory()
    record.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
    record.set_launch("( rtph264depay name=depay0 ! fakesink name=sink signal-handoffs=true )")
    received = [0]

    def on_frame(*_args: object) -> None:
        received[0] += 1
        if received[0] % 10 == 0:
            print(f"received {received[0]}", flush=True)

    def configure(_factory: object, media: GstRtspServer.RTSPMedia) -> None:
        media.get_element().get_by_name("sink").connect("handoff", on_frame)

    record.connect("media-configure", configure)
    server.get_mount_points().add_factory("/publish", record)
    # Several threads: one client's RTSP session must never wait on another's.
    server.get_thread_pool().set_max_threads(4)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
