"""`python -m derain`: the same command line as `derain`."""

from derain.cli import entry

entry()
