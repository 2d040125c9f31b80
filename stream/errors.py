"""The video commands' user errors: one line each, saying what to do instead."""


class VideoError(ValueError):
    """A video input, output or option that cannot be used as given."""
