#!/bin/sh
# mypy over the package as it installs: derain/ with models/, engines/, stream/ and benchmarks/
# mapped into it (pyproject's package-dir), a layout mypy cannot follow through an editable
# install's import hook. A tree of links gives it the installed names; settings in pyproject.toml.
set -eu
cd "$(dirname "$0")/.."
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/derain"
for entry in derain/*; do ln -s "$PWD/$entry" "$tree/derain/"; done
for layer in models engines stream benchmarks; do ln -s "$PWD/$layer" "$tree/derain/$layer"; done
cd "$tree" && mypy --config-file "$OLDPWD/pyproject.toml" -p derain
