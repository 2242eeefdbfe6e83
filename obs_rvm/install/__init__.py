"""Setting obs-rvm up for OBS Studio on Linux: find OBS and the Python it embeds, build a matching environment, wire
the OBS script to it, and take it all away again. `installer/install.sh` runs this package; `obs-rvm doctor` reads
the same facts.

Everything here except `model` uses the standard library only: the installer runs it with a bare system Python,
before the environment exists.
"""
