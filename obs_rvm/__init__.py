"""obs-rvm: real-time background removal with Robust Video Matting, for OBS Studio and the command line."""

__version__ = "0.1.0"
