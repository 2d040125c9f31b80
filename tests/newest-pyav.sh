#!/bin/sh
# The video I/O tests (tests/test_io.py) on the newest Python here, with the newest PyAV that
# pyproject.toml allows. PyAV 19 needs Python 3.12+, so on 3.11 pip picks 18.x and the main run
# alone would never see a newer PyAV. No torch: no CPU build of it is at hand for those Pythons,
# and the I/O layer does not need it. Exits 0 with a note where no Python 3.12+ is installed.
set -eu
cd "$(dirname "$0")/.."

python=""
for candidate in python3.13 python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3; do
    # pyenv's shims exist for versions that are installed but not selected, and fail when run.
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    echo "tests/newest-pyav.sh: no Python 3.12 or newer here; the newest-PyAV run is skipped"
    exit 0
fi

av=$("$python" -c 'import tomllib; print(next(d for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"] if d.startswith("av")))')
"$python" -m venv .venv-newest
.venv-newest/bin/pip install -q "$av" numpy pytest pytest-timeout
.venv-newest/bin/pip install -q --no-deps -e .
.venv-newest/bin/python -c 'import av, sys; print(f"newest-PyAV run: Python {sys.version.split()[0]}, PyAV {av.__version__}")'
.venv-newest/bin/python -m pytest -p no:cacheprovider tests/test_io.py
