"""V4L2 devices through the kernel API: find cameras and v4l2loopback devices, and feed a loopback device YUYV.

A small writer of our own rather than pyvirtualcam: pyvirtualcam never sets the device's frame rate (no S_PARM),
only prints failed writes (a vanished device would go unnoticed), and reports every problem as one generic
exception. Here each failure has its own actionable message, and the ABI (struct layouts, ioctl numbers) is
checked against the kernel header by the tests, which run without the kernel module.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..errors import DeviceError
from ..install.system import MODPROBE  # the installer, doctor and camera print one command
from ..video_io import Sink

# -- the ABI (linux/videodev2.h) ---------------------------------------------------------------------------------

u32 = ctypes.c_uint32


class Capability(ctypes.Structure):
    _fields_ = [("driver", ctypes.c_char * 16), ("card", ctypes.c_char * 32), ("bus_info", ctypes.c_char * 32),
                ("version", u32), ("capabilities", u32), ("device_caps", u32), ("reserved", u32 * 3)]


class PixFormat(ctypes.Structure):
    _fields_ = [("width", u32), ("height", u32), ("pixelformat", u32), ("field", u32), ("bytesperline", u32),
                ("sizeimage", u32), ("colorspace", u32), ("priv", u32), ("flags", u32), ("ycbcr_enc", u32),
                ("quantization", u32), ("xfer_func", u32)]


class _FormatUnion(ctypes.Union):
    # The kernel's union also holds struct v4l2_window, which has pointers: the union is pointer-aligned.
    _fields_ = [("pix", PixFormat), ("raw_data", ctypes.c_uint8 * 200), ("_align", ctypes.c_void_p)]


class Format(ctypes.Structure):
    _fields_ = [("type", u32), ("fmt", _FormatUnion)]


class Fract(ctypes.Structure):
    _fields_ = [("numerator", u32), ("denominator", u32)]


class OutputParm(ctypes.Structure):
    _fields_ = [("capability", u32), ("outputmode", u32), ("timeperframe", Fract), ("extendedmode", u32),
                ("writebuffers", u32), ("reserved", u32 * 4)]


class _ParmUnion(ctypes.Union):
    _fields_ = [("output", OutputParm), ("raw_data", ctypes.c_uint8 * 200)]


class StreamParm(ctypes.Structure):
    _fields_ = [("type", u32), ("parm", _ParmUnion)]


def _iowr(nr: int, size: int, read: bool = True, write: bool = True) -> int:
    """The kernel's _IOC(dir, 'V', nr, size) for the video ioctls."""
    direction = (2 if read else 0) | (1 if write else 0)
    return (direction << 30) | (size << 16) | (ord("V") << 8) | nr


VIDIOC_QUERYCAP = _iowr(0, ctypes.sizeof(Capability), write=False)
VIDIOC_G_FMT = _iowr(4, ctypes.sizeof(Format))
VIDIOC_S_FMT = _iowr(5, ctypes.sizeof(Format))
VIDIOC_G_PARM = _iowr(21, ctypes.sizeof(StreamParm))
VIDIOC_S_PARM = _iowr(22, ctypes.sizeof(StreamParm))

BUF_TYPE_VIDEO_OUTPUT = 2
CAP_VIDEO_CAPTURE = 0x1
CAP_VIDEO_OUTPUT = 0x2
CAP_DEVICE_CAPS = 0x80000000
FIELD_NONE = 1
COLORSPACE_SRGB = 8
YCBCR_ENC_601 = 1
QUANTIZATION_LIM_RANGE = 2
LOOPBACK_DRIVER = "v4l2 loopback"


def fourcc(code: str) -> int:
    a, b, c, d = (ord(ch) for ch in code)
    return a | b << 8 | c << 16 | d << 24


def fourcc_name(value: int) -> str:
    return "".join(chr((value >> s) & 0xFF) for s in (0, 8, 16, 24)).strip("\0 ") or "?"


PIX_FMT_YUYV = fourcc("YUYV")

# -- finding devices ----------------------------------------------------------------------------------------------

SYS_MODULE = Path("/sys/module/v4l2loopback")


@dataclass(frozen=True)
class DeviceInfo:
    path: str
    driver: str
    card: str
    caps: int
    """The node's own capabilities (device_caps when the driver reports them)."""

    @property
    def loopback(self) -> bool:
        return self.driver == LOOPBACK_DRIVER

    @property
    def capture(self) -> bool:
        return bool(self.caps & CAP_VIDEO_CAPTURE)

    def label(self) -> str:
        return f"{self.path} ({self.card})"


def query(path: str) -> DeviceInfo:
    """Open a device node briefly and ask what it is; DeviceError (one line, with the fix) if that fails."""
    fd = _open(path, os.O_RDONLY)
    try:
        cap = Capability()
        try:
            fcntl.ioctl(fd, VIDIOC_QUERYCAP, cap)
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EINVAL):
                raise DeviceError(f"{path} is not a video (V4L2) device") from None
            raise DeviceError(f"cannot query {path}: {e.strerror}") from None
        caps = cap.device_caps if cap.capabilities & CAP_DEVICE_CAPS else cap.capabilities
        return DeviceInfo(path, cap.driver.decode(errors="replace"), cap.card.decode(errors="replace"), caps)
    finally:
        os.close(fd)


def _open(path: str, flags: int) -> int:
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    if not stat.S_ISCHR(os.stat(path).st_mode):
        raise DeviceError(f"{path} is not a video device (not a character device)")
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except PermissionError:
        raise DeviceError(f"no permission to open {path}: add yourself to the 'video' group "
                          f"(sudo usermod -aG video $USER, then log out and in again)") from None
    except OSError as e:
        raise DeviceError(f"cannot open {path}: {e.strerror}") from None


def list_devices(dev: Path = Path("/dev")) -> list[DeviceInfo]:
    """Every video node that answers VIDIOC_QUERYCAP, in numeric order."""
    nodes = sorted(dev.glob("video[0-9]*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 1 << 30)
    found = []
    for node in nodes:
        try:
            found.append(query(str(node)))
        except (DeviceError, OSError):
            continue
    return found


def describe(devices: list[DeviceInfo]) -> str:
    return ", ".join(d.label() for d in devices) if devices else "none"


def missing_loopback_message(path: str, devices: list[DeviceInfo], module: Path = SYS_MODULE) -> str:
    """What to tell someone whose loopback device is not there: load the module, or pick a device that exists."""
    if not module.exists():
        return (f"{path} does not exist and the v4l2loopback kernel module is not loaded: install it "
                f"(Debian/Ubuntu: sudo apt install v4l2loopback-dkms) and load it: {MODPROBE}")
    loopbacks = [d for d in devices if d.loopback]
    if loopbacks:
        return f"{path} does not exist: the v4l2loopback devices here are {describe(loopbacks)}"
    return (f"{path} does not exist and v4l2loopback has no devices: reload it "
            f"(sudo modprobe -r v4l2loopback; {MODPROBE})")


def missing_camera_message(path: str, devices: list[DeviceInfo]) -> str:
    cameras = [d for d in devices if d.capture and not d.loopback]
    if cameras:
        return f"camera {path} not found: the cameras here are {describe(cameras)}"
    return f"camera {path} not found, and no camera is connected (no /dev/video* capture device): plug one in"


# -- negotiating the loopback format --------------------------------------------------------------------------------


def format_request(width: int, height: int) -> Format:
    """S_FMT for an output of packed YUYV: BT.601 limited range, the way webcams send it (what Chrome, Zoom and
    Teams expect)."""
    if width % 2:
        raise DeviceError(f"YUYV needs an even width, got {width}: pass -W {width + 1} (or -W {width - 1})")
    f = Format(type=BUF_TYPE_VIDEO_OUTPUT)
    p = f.fmt.pix
    p.width, p.height, p.pixelformat, p.field = width, height, PIX_FMT_YUYV, FIELD_NONE
    p.bytesperline, p.sizeimage = 2 * width, 2 * width * height
    p.colorspace, p.ycbcr_enc, p.quantization = COLORSPACE_SRGB, YCBCR_ENC_601, QUANTIZATION_LIM_RANGE
    return f


def check_format(path: str, reply: Format, width: int, height: int) -> int:
    """The driver answers S_FMT with the format it will use: anything but our size in YUYV is an error (another
    program fixed the format). Returns the frame size in bytes."""
    p = reply.fmt.pix
    if (p.width, p.height, p.pixelformat) != (width, height, PIX_FMT_YUYV):
        got = f"{p.width}x{p.height} {fourcc_name(p.pixelformat)}"
        fix = (f"pass -W {p.width} -H {p.height}, or " if p.pixelformat == PIX_FMT_YUYV else "") + \
            "close the programs using it (or reload v4l2loopback)"
        raise DeviceError(f"{path} is fixed to {got} by another program, not {width}x{height} YUYV: {fix}")
    if p.bytesperline not in (0, 2 * width):
        raise DeviceError(f"{path} wants {p.bytesperline} bytes per line for {width}x{height} YUYV (expected "
                          f"{2 * width}): reload v4l2loopback")
    return 2 * width * height


def fps_request(fps: float) -> StreamParm:
    """S_PARM so readers see our frame rate (v4l2loopback advertises it; NTSC 29.97 becomes 1001/30000 s per frame)."""
    rate = Fraction(fps).limit_denominator(1001)
    parm = StreamParm(type=BUF_TYPE_VIDEO_OUTPUT)
    parm.parm.output.timeperframe = Fract(rate.denominator, rate.numerator)
    return parm


BUSY = "is busy: another program is already feeding it (OBS's virtual camera, another obs-rvm?): stop it or use " \
       "another loopback device"


def open_loopback(path: str, width: int, height: int, fps: float) -> LoopbackSink:
    """Claim a v4l2loopback device as its producer, set YUYV at our size and frame rate, and return the sink."""
    request = format_request(width, height)
    try:
        info = query(path)
    except FileNotFoundError:
        raise DeviceError(missing_loopback_message(path, list_devices())) from None
    if not info.loopback:
        others = [d for d in list_devices() if d.loopback]
        hint = f"use {describe(others)}" if others else f"load v4l2loopback first: {MODPROBE}"
        raise DeviceError(f"{info.label()} is not a v4l2loopback device (driver '{info.driver}'): {hint}")
    if not info.caps & CAP_VIDEO_OUTPUT:
        raise DeviceError(f"{path} {BUSY}")  # exclusive_caps=1 hides the output side while a producer streams
    fd = _open(path, os.O_WRONLY)
    try:
        try:
            fcntl.ioctl(fd, VIDIOC_S_FMT, request)
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise DeviceError(f"{path} {BUSY}") from None
            raise DeviceError(f"{path} refused {width}x{height} YUYV: {e.strerror}") from None
        frame_bytes = check_format(path, request, width, height)
        warning = None
        try:
            fcntl.ioctl(fd, VIDIOC_S_PARM, fps_request(fps))
        except OSError as e:  # readers then see the module's default rate; the frames still flow
            warning = f"{path} did not accept {fps:g} fps ({e.strerror}): readers may see another frame rate"
    except BaseException:
        os.close(fd)
        raise
    return LoopbackSink(fd, path, width, height, frame_bytes, warning)


# -- writing ------------------------------------------------------------------------------------------------------


def rgba_to_yuyv(rgba: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGBA [H, W, 4] -> YUYV [H, W, 2] (Y0 U Y1 V), BT.601 limited range; alpha is ignored."""
    return cv2.cvtColor(rgba, cv2.COLOR_RGBA2YUV_YUYV, dst=out)


class LoopbackSink(Sink):
    """Writes each frame whole with write(2); v4l2loopback hands it to every reader."""

    def __init__(self, fd: int, path: str, width: int, height: int, frame_bytes: int | None = None,
                 warning: str | None = None) -> None:
        self.fd, self.path, self.size, self.warning = fd, Path(path), (width, height), warning
        self.frame_bytes = frame_bytes or 2 * width * height
        self._yuyv = np.empty((height, width, 2), np.uint8)

    def write(self, rgba: np.ndarray) -> None:
        if rgba.shape[1::-1] != self.size:
            raise DeviceError(f"frame of {rgba.shape[1]}x{rgba.shape[0]} for {self.path} set to "
                              f"{self.size[0]}x{self.size[1]}")
        data = memoryview(rgba_to_yuyv(rgba, self._yuyv)).cast("B")
        try:
            written = os.write(self.fd, data)
        except OSError as e:
            if e.errno in (errno.ENODEV, errno.ENXIO, errno.EIO):
                raise DeviceError(f"{self.path} went away while writing (v4l2loopback unloaded?)") from None
            raise DeviceError(f"writing to {self.path} failed: {e.strerror}") from None
        if written != self.frame_bytes:
            raise DeviceError(f"{self.path} took {written} of {self.frame_bytes} bytes of a frame: reload "
                              f"v4l2loopback")

    def commit(self) -> None:
        self.abort()

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
