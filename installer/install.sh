#!/usr/bin/env bash
# obs-rvm installer for OBS Studio on Linux: `installer/install.sh --help` says what it does.
# This wrapper only finds a Python 3.10+ to run the installer with (any will do: the environment for OBS is built
# with the Python OBS itself embeds, which the installer reads from OBS's scripting library).
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -f "$SRC/obs_rvm/install/installer.py" ]; then
  echo "install.sh: error: run it from an obs-rvm source checkout (obs_rvm/ not found beside installer/)" >&2
  exit 1
fi
PY=""
for candidate in python3 /usr/bin/python3 python3.13 python3.12 python3.11 python3.10; do
  found="$(command -v "$candidate" 2>/dev/null || true)"
  if [ -n "$found" ] && "$found" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    PY="$found"; break
  fi
done
if [ -z "$PY" ]; then
  echo "install.sh: error: no Python 3.10 or newer found: sudo apt-get install python3 python3-venv, then run this again" >&2
  exit 1
fi
export OBS_RVM_SOURCE="$SRC"
exec "$PY" -s -c 'import os, sys
sys.path.insert(0, os.environ["OBS_RVM_SOURCE"])
from obs_rvm.install.installer import main
sys.exit(main(sys.argv[1:]))' "$@"
