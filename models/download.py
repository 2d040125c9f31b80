"""The one downloader behind every fetch: hashed, length-checked, atomic.

The weights (`derain weights fetch`) and the training photos' packages both come from here:
the body is written under a temporary name beside the target and renamed into place only
after its length matches Content-Length and its SHA-256 matches the pinned value, so a
failed, cut or altered download never lands where a later run would trust it.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from derain.models.errors import DerainError
from derain.models.files import atomic_path

SCHEMES = ("http", "https", "file")
CHUNK = 1 << 16


def download(
    url: str,
    target: Path,
    sha256: str,
    *,
    hint: str,
    pinned_by: str = "as pinned",
    error: type[DerainError] = DerainError,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download `url` to `target` (its folder must exist) if its bytes hash to `sha256`.

    Args:
        url: http(s) or file URL.
        target: where the file goes; replaced only by a complete, matching download.
        sha256: the expected SHA-256, hex.
        hint: what the user can do, ending every error message (e.g. "give a `mirror` URL").
        pinned_by: who pinned the hash, for the mismatch message (e.g. "as Debian's index gave it").
        error: the DerainError subclass to raise.
        timeout: seconds to wait for the server at each step.
        progress: called with (bytes so far, Content-Length or None) after each chunk.

    Returns:
        `target`.

    Raises:
        error: a one-line message naming the URL, what went wrong and `hint`; `target` is left
            as it was and no temporary file stays behind.
    """
    if urllib.parse.urlsplit(url).scheme not in SCHEMES:
        raise error(f"{url}: not an http(s) URL; {hint}")
    digest = hashlib.sha256()
    received = 0
    try:
        with atomic_path(target, suffix=".part") as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                expected = int(length) if length and length.isdigit() else None
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if progress:
                        progress(received, expected)
            if expected is not None and received != expected:
                raise error(f"{url}: the download stopped after {received} of {expected} bytes; run again, or {hint}")
            if digest.hexdigest() != sha256:
                raise error(
                    f"{url}: SHA-256 {digest.hexdigest()[:16]}..., not {sha256[:16]}... {pinned_by}: "
                    f"the file does not match and was discarded; {hint}"
                )
    except urllib.error.HTTPError as err:
        raise error(f"{url}: download failed (HTTP {err.code} {err.reason}); {hint}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        raise error(f"{url}: download failed ({_reason(err)}); {hint}") from None
    return target


def _reason(err: Exception) -> str:
    """What went wrong, in a few words: the socket's reason, or the exception as text."""
    if isinstance(err, http.client.HTTPException):
        return f"not an HTTP reply: {err}"
    reason = getattr(err, "reason", None)
    if reason is not None:
        return str(reason)
    return str(err) or type(err).__name__
