"""The library's parameter names in a message, as the flags that set them.

Library messages name a parameter the way a caller of `import derain` writes it:
`engine='bogus'`, `overwrite=True`, or `` `timeout` `` alone. Printed by the command line,
the same message names the flag: `--engine bogus`, `--overwrite`, `--timeout`.
"""

from __future__ import annotations

import re

# Every library parameter that a flag sets; the flag is the name with dashes unless renamed.
PARAMETERS = (
    "address", "allow_lossy", "amp", "batch", "bitrate", "codec", "crf", "device", "drop_policy", "duration", "dynamic",
    "engine", "epochs", "format", "gpus_per_worker", "heavy_fraction", "identity", "init", "l1", "lr", "max_latency",
    "mirror", "out", "overwrite", "patch", "precision", "preset", "procedural", "realtime", "reconnect_max",
    "restream", "resume", "retries", "shape", "stages", "start", "steps_per_epoch", "structures", "synthetic_rain",
    "temporal", "tile", "timeout", "val", "val_crop", "variant", "weights", "workers",
)
RENAMED = {"input_options": "--option", "outdir": "-o", "output": "-o"}

_NAMES = "|".join(sorted((*PARAMETERS, *RENAMED), key=len, reverse=True))
_SWITCH = re.compile(rf"\b({_NAMES})=True\b")
_VALUE = re.compile(rf"""\b({_NAMES})=('[^']*'|"[^"]*"|[^\s,;:)]+)""")
_BARE = re.compile(rf"`({_NAMES})`")


def flag(name: str) -> str:
    """The flag that sets the library parameter `name`."""
    return RENAMED.get(name) or "--" + name.replace("_", "-")


def as_flags(message: str) -> str:
    """`message` with each parameter it names written as the flag, as a user of the CLI sets it."""
    message = _SWITCH.sub(lambda m: flag(m[1]), message)
    message = _VALUE.sub(lambda m: f"{flag(m[1])} {m[2].strip(chr(34) + chr(39))}", message)
    return _BARE.sub(lambda m: flag(m[1]), message)
