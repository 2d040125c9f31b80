"""One error hierarchy for all of derain (re-exported as `derain.DerainError` and friends).

Every failure a user can act on is a `DerainError` whose `str()` is one line: the file, option
or device it is about, and what to do instead. It lives in the lowest layer so that every
layer above raises the same classes.
"""

from __future__ import annotations


class DerainError(Exception):
    """Base of every error derain raises for an input, output, option or machine it cannot use."""


class InputError(DerainError):
    """An input file, folder, URL or option value that cannot be used as given."""


class OutputError(DerainError):
    """An output that cannot be written as asked."""


class WeightsError(DerainError):
    """Weights that cannot be found, fetched or loaded."""


class EngineError(DerainError):
    """An engine that cannot be built or run here."""
