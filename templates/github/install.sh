#!/usr/bin/env bash
# Install cacheport into $RUNNER_TEMP/cacheport-venv, put it on the PATH and name it as the step output `cli`.
# Shared by the cacheport action and its report sub-action: whichever runs second in a job finds what the first
# installed (the same requirement) and installs nothing.
#   PYTHON          the Python to make the venv with
#   INPUT_SOURCE    a pip requirement (a path, a wheel, git+https://...); wins over INPUT_VERSION
#   INPUT_VERSION   a cacheport version from the package index
#   neither         the checkout this script is in: the action's own source, so @vX runs version X
set -euo pipefail
if [[ -n "${INPUT_SOURCE:-}" ]]; then
  spec=$INPUT_SOURCE
elif [[ -n "${INPUT_VERSION:-}" ]]; then
  spec="cacheport==$INPUT_VERSION"
else
  spec=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
fi
venv="$RUNNER_TEMP/cacheport-venv"
if [[ -x "$venv/bin/cacheport" && "$(cat "$venv/cacheport-requirement" 2>/dev/null)" == "$spec" ]]; then
  echo "cacheport: already installed in this job from $spec"
else
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$spec"
  printf '%s\n' "$spec" > "$venv/cacheport-requirement"
fi
echo "$venv/bin" >> "$GITHUB_PATH"
echo "cli=$venv/bin/cacheport" >> "$GITHUB_OUTPUT"
