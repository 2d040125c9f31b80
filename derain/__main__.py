"""`python -m derain`: the same command line as `derain`."""

import sys

from derain.cli import main

sys.exit(main())
