# Sourced by demo.sh and test.sh: make ./.venv with the Python OBS embeds on Debian/Ubuntu (python3.11 where
# present, so the same environment also serves the OBS script), and install the project into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=""
for candidate in /usr/bin/python3.11 python3.11 python3; do
  PY="$(command -v "$candidate" || true)"; [ -n "$PY" ] && break
done
[ -n "$PY" ] || { echo "obs-rvm: python3 not found: install python3 (3.10 or newer)" >&2; exit 1; }
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv" || { echo "obs-rvm: cannot create a virtual environment: install python3-venv" >&2; exit 1; }
fi
"$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT${OBS_RVM_EXTRAS:-}"
if ! err="$("$ROOT/.venv/bin/python" -c 'import cv2' 2>&1)"; then
  echo "obs-rvm: OpenCV cannot load: ${err##*$'\n'}" >&2
  echo "obs-rvm: it needs the system's OpenGL and GLib libraries: sudo apt install libgl1 libglib2.0-0" >&2
  exit 1
fi
