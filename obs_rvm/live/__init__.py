"""Live video without OBS: camera capture, the capture/inference stages, the v4l2loopback output, the preview window.

`obs-rvm camera` and `obs-rvm demo --camera` are built from these; the OBS filter has its own frame path (obs/).
"""
