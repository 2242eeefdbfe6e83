#!/usr/bin/env bash
# The README's first command: install into ./.venv and write a contact sheet of every background mode
# (bundled sample picture; the official model downloaded on first use, or the bundled one offline). Extra arguments
# go to `obs-rvm demo`.
source "$(dirname "$0")/env.sh"
exec "$ROOT/.venv/bin/obs-rvm" demo "$@"
