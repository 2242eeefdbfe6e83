#!/usr/bin/env bash
# The README's second command: install what the tests need (Debian/Ubuntu packages when run as root, the Python
# test extras into ./.venv) and run lint and the whole test suite, OBS end-to-end tests included. pytest-randomly
# shuffles the tests (the seed is printed first and last: --randomly-seed=N repeats an order); the OBS tests keep
# their file order (tests/conftest.py), and the end says how long the OBS tests and the others took.
set -euo pipefail
need=()
for pkg in obs-studio xvfb xdotool ffmpeg python3-venv gcc linux-libc-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "obs-rvm tests need: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
OBS_RVM_EXTRAS="[test]" source "$(dirname "$0")/env.sh"
cd "$ROOT"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
