#!/usr/bin/env bash
# The runner's own Python, if it is 3.11 or newer, as the step output `path`; empty lets actions/setup-python
# install one. Shared by the cacheport action and its report sub-action (action.yml, report/action.yml).
set -euo pipefail
for candidate in python3 python3.14 python3.13 python3.12 python3.11; do
  if found=$(command -v "$candidate") && "$found" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
  then
    echo "path=$found" >> "$GITHUB_OUTPUT"
    exit 0
  fi
done
echo "cacheport: no Python 3.11 or newer on this runner; actions/setup-python installs one"
