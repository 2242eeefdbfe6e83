"""The V4L2 output path without the v4l2loopback module: the ABI against the kernel header, the YUYV conversion
against OpenCV's own and against the BT.601 formulas, the negotiation rules, and the messages for wrong devices."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from obs_rvm.errors import DeviceError
from obs_rvm.live import v4l2

HEADER = Path("/usr/include/linux/videodev2.h")

PROBE_C = r"""
#include <stdio.h>
#include <stddef.h>
#include <linux/videodev2.h>
#define P(name, value) printf("%s %lu\n", name, (unsigned long)(value))
int main(void) {
    P("sizeof_capability", sizeof(struct v4l2_capability));
    P("sizeof_pix_format", sizeof(struct v4l2_pix_format));
    P("sizeof_format", sizeof(struct v4l2_format));
    P("sizeof_streamparm", sizeof(struct v4l2_streamparm));
    P("offset_format_fmt", offsetof(struct v4l2_format, fmt));
    P("offset_capability_device_caps", offsetof(struct v4l2_capability, device_caps));
    P("offset_pix_bytesperline", offsetof(struct v4l2_pix_format, bytesperline));
    P("offset_pix_quantization", offsetof(struct v4l2_pix_format, quantization));
    P("offset_outputparm_timeperframe", offsetof(struct v4l2_outputparm, timeperframe));
    P("VIDIOC_QUERYCAP", VIDIOC_QUERYCAP);
    P("VIDIOC_G_FMT", VIDIOC_G_FMT);
    P("VIDIOC_S_FMT", VIDIOC_S_FMT);
    P("VIDIOC_G_PARM", VIDIOC_G_PARM);
    P("VIDIOC_S_PARM", VIDIOC_S_PARM);
    P("V4L2_PIX_FMT_YUYV", V4L2_PIX_FMT_YUYV);
    P("V4L2_BUF_TYPE_VIDEO_OUTPUT", V4L2_BUF_TYPE_VIDEO_OUTPUT);
    P("V4L2_CAP_VIDEO_CAPTURE", V4L2_CAP_VIDEO_CAPTURE);
    P("V4L2_CAP_VIDEO_OUTPUT", V4L2_CAP_VIDEO_OUTPUT);
    P("V4L2_CAP_DEVICE_CAPS", V4L2_CAP_DEVICE_CAPS);
    P("V4L2_FIELD_NONE", V4L2_FIELD_NONE);
    P("V4L2_COLORSPACE_SRGB", V4L2_COLORSPACE_SRGB);
    P("V4L2_YCBCR_ENC_601", V4L2_YCBCR_ENC_601);
    P("V4L2_QUANTIZATION_LIM_RANGE", V4L2_QUANTIZATION_LIM_RANGE);
    return 0;
}
"""


@pytest.fixture(scope="module")
def kernel_abi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """The numbers as the C compiler sees them in the installed kernel header."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc or not HEADER.is_file():
        pytest.skip("needs a C compiler and linux/videodev2.h (apt-get install gcc linux-libc-dev)")
    folder = tmp_path_factory.mktemp("abi")
    (folder / "probe.c").write_text(PROBE_C)
    subprocess.run([cc, "-o", str(folder / "probe"), str(folder / "probe.c")], check=True)
    out = subprocess.run([str(folder / "probe")], check=True, capture_output=True, text=True).stdout
    return {name: int(value) for name, value in (line.split() for line in out.splitlines())}


def test_struct_layouts_match_the_kernel_header(kernel_abi: dict[str, int]) -> None:
    assert ctypes.sizeof(v4l2.Capability) == kernel_abi["sizeof_capability"]
    assert ctypes.sizeof(v4l2.PixFormat) == kernel_abi["sizeof_pix_format"]
    assert ctypes.sizeof(v4l2.Format) == kernel_abi["sizeof_format"]
    assert ctypes.sizeof(v4l2.StreamParm) == kernel_abi["sizeof_streamparm"]
    assert v4l2.Format.fmt.offset == kernel_abi["offset_format_fmt"]
    assert v4l2.Capability.device_caps.offset == kernel_abi["offset_capability_device_caps"]
    assert v4l2.PixFormat.bytesperline.offset == kernel_abi["offset_pix_bytesperline"]
    assert v4l2.PixFormat.quantization.offset == kernel_abi["offset_pix_quantization"]
    assert v4l2.OutputParm.timeperframe.offset == kernel_abi["offset_outputparm_timeperframe"]


def test_ioctl_numbers_and_constants_match_the_kernel_header(kernel_abi: dict[str, int]) -> None:
    for name in ("VIDIOC_QUERYCAP", "VIDIOC_G_FMT", "VIDIOC_S_FMT", "VIDIOC_G_PARM", "VIDIOC_S_PARM"):
        assert getattr(v4l2, name) == kernel_abi[name], name
    ours = {"V4L2_PIX_FMT_YUYV": v4l2.PIX_FMT_YUYV, "V4L2_BUF_TYPE_VIDEO_OUTPUT": v4l2.BUF_TYPE_VIDEO_OUTPUT,
            "V4L2_CAP_VIDEO_CAPTURE": v4l2.CAP_VIDEO_CAPTURE, "V4L2_CAP_VIDEO_OUTPUT": v4l2.CAP_VIDEO_OUTPUT,
            "V4L2_CAP_DEVICE_CAPS": v4l2.CAP_DEVICE_CAPS, "V4L2_FIELD_NONE": v4l2.FIELD_NONE,
            "V4L2_COLORSPACE_SRGB": v4l2.COLORSPACE_SRGB, "V4L2_YCBCR_ENC_601": v4l2.YCBCR_ENC_601,
            "V4L2_QUANTIZATION_LIM_RANGE": v4l2.QUANTIZATION_LIM_RANGE}
    assert ours == {name: kernel_abi[name] for name in ours}


# -- YUYV ------------------------------------------------------------------------------------------------------------


def bt601_limited(rgb: np.ndarray) -> np.ndarray:
    """Y'CbCr of BT.601 in video range, straight from the standard's equations (float)."""
    r, g, b = (rgb[..., i].astype(np.float64) / 255 for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - y) / 1.772
    cr = (r - y) / 1.402
    return np.stack([16 + 219 * y, 128 + 224 * cb, 128 + 224 * cr], axis=-1)


def sample_rgba(h: int = 48, w: int = 64) -> np.ndarray:
    frame = cv2.resize(cv2.imread(str(Path(__file__).parent.parent / "obs_rvm/data/astronaut.png")), (w, h))
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGBA)


def test_yuyv_is_bt601_video_range_in_yuyv_byte_order() -> None:
    rgba = sample_rgba()
    rgba[..., 3] = np.random.default_rng(0).integers(0, 256, rgba.shape[:2])  # alpha must not matter
    yuyv = v4l2.rgba_to_yuyv(rgba)
    assert yuyv.shape == (48, 64, 2) and yuyv.dtype == np.uint8
    expected = bt601_limited(rgba[..., :3])
    y = yuyv[..., 0].astype(np.float64)
    u, v = yuyv[:, 0::2, 1].astype(np.float64), yuyv[:, 1::2, 1].astype(np.float64)  # Y0 U Y1 V
    pair = (expected[:, 0::2] + expected[:, 1::2]) / 2  # 4:2:2: one chroma sample per horizontal pair
    assert np.abs(y - expected[..., 0]).max() <= 1.0
    assert np.abs(u - pair[..., 1]).max() <= 1.5
    assert np.abs(v - pair[..., 2]).max() <= 1.5
    # Pure colours, as a Zoom or Chrome reader decodes them (red: Y 81.5, U 90.2, V 240; blue: Y 41.0, U 240, V 109.8),
    # within the rounding of an 8-bit converter.
    for colour in ((255, 0, 0), (0, 0, 255)):
        y0, u, y1, v = v4l2.rgba_to_yuyv(np.full((2, 2, 4), (*colour, 255), np.uint8))[0].ravel().astype(np.float64)
        ey, eu, ev = bt601_limited(np.array(colour, np.float64))
        assert max(abs(y0 - ey), abs(y1 - ey), abs(u - eu), abs(v - ev)) <= 1.0, (colour, (y0, u, y1, v))


def test_yuyv_round_trips_through_opencvs_decoder() -> None:
    """A reader decoding with OpenCV's YUYV -> RGB gets the frame back (within 4:2:2 chroma sharing)."""
    rgba = sample_rgba()
    rgba[:, 1::2] = rgba[:, 0::2]  # equal pixel pairs: chroma subsampling then loses nothing
    back = cv2.cvtColor(v4l2.rgba_to_yuyv(rgba), cv2.COLOR_YUV2RGB_YUYV)
    assert np.abs(back.astype(int) - rgba[..., :3]).max() <= 3
    general = sample_rgba()
    back = cv2.cvtColor(v4l2.rgba_to_yuyv(general), cv2.COLOR_YUV2RGB_YUYV)
    assert np.abs(back.astype(int) - general[..., :3]).mean() < 3


def test_loopback_sink_writes_whole_yuyv_frames(tmp_path: Path) -> None:
    """The write path proper (what v4l2loopback receives), into a plain file."""
    path = tmp_path / "frames.yuyv"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    sink = v4l2.LoopbackSink(fd, str(path), 64, 48)
    frames = [sample_rgba(), sample_rgba()[::-1].copy()]
    for frame in frames:
        sink.write(frame)
    sink.commit()
    data = np.fromfile(path, np.uint8).reshape(2, 48, 64, 2)
    for frame, raw in zip(frames, data, strict=True):
        assert np.array_equal(raw, cv2.cvtColor(frame, cv2.COLOR_RGBA2YUV_YUYV))
    with pytest.raises(DeviceError, match="frame of 32x48"):
        v4l2.LoopbackSink(os.open(path, os.O_WRONLY), str(path), 64, 48).write(np.zeros((48, 32, 4), np.uint8))


def test_write_failure_is_a_device_error(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)
    sink = v4l2.LoopbackSink(write, "/dev/video10", 64, 48)
    with pytest.raises(DeviceError, match="writing to /dev/video10 failed"):
        sink.write(sample_rgba())
    sink.abort()


# -- negotiation -----------------------------------------------------------------------------------------------------


def test_format_request_asks_for_yuyv_at_our_size() -> None:
    f = v4l2.format_request(640, 480)
    p = f.fmt.pix
    assert f.type == v4l2.BUF_TYPE_VIDEO_OUTPUT
    assert (p.width, p.height, p.pixelformat, p.field) == (640, 480, v4l2.fourcc("YUYV"), v4l2.FIELD_NONE)
    assert (p.bytesperline, p.sizeimage) == (1280, 640 * 480 * 2)
    assert v4l2.fourcc_name(p.pixelformat) == "YUYV"
    with pytest.raises(DeviceError, match="even width, got 641: pass -W 642"):
        v4l2.format_request(641, 480)


def test_check_format_accepts_our_format_and_explains_a_fixed_one() -> None:
    reply = v4l2.format_request(640, 480)
    assert v4l2.check_format("/dev/video10", reply, 640, 480) == 640 * 480 * 2
    other = v4l2.format_request(1280, 720)
    with pytest.raises(DeviceError, match=r"fixed to 1280x720 YUYV .* pass -W 1280 -H 720"):
        v4l2.check_format("/dev/video10", other, 640, 480)
    other.fmt.pix.pixelformat = v4l2.fourcc("YU12")
    with pytest.raises(DeviceError, match=r"fixed to 1280x720 YU12 .*: close the programs using it"):
        v4l2.check_format("/dev/video10", other, 640, 480)
    padded = v4l2.format_request(640, 480)
    padded.fmt.pix.bytesperline = 1344
    with pytest.raises(DeviceError, match="1344 bytes per line"):
        v4l2.check_format("/dev/video10", padded, 640, 480)


@pytest.mark.parametrize(("fps", "per_frame"),
                         [(30, (1, 30)), (30000 / 1001, (1001, 30000)), (29.97, (100, 2997)), (60, (1, 60))])
def test_fps_request_sets_time_per_frame(fps: float, per_frame: tuple[int, int]) -> None:
    parm = v4l2.fps_request(fps)
    tpf = parm.parm.output.timeperframe
    assert parm.type == v4l2.BUF_TYPE_VIDEO_OUTPUT
    assert (tpf.numerator, tpf.denominator) == per_frame


# -- devices and their messages --------------------------------------------------------------------------------------


def test_non_v4l2_nodes_are_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match=r"^/dev/null is not a video \(V4L2\) device$"):
        v4l2.query("/dev/null")
    plain = tmp_path / "video10"
    plain.write_bytes(b"")
    with pytest.raises(DeviceError, match="not a character device"):
        v4l2.query(str(plain))
    with pytest.raises(FileNotFoundError):
        v4l2.query(str(tmp_path / "missing"))
    with pytest.raises(DeviceError, match=r"/dev/null is not a video \(V4L2\) device"):
        v4l2.open_loopback("/dev/null", 640, 480, 30)


def test_missing_loopback_device_messages(tmp_path: Path) -> None:
    unloaded = v4l2.missing_loopback_message("/dev/video10", [], module=tmp_path / "no-module")
    assert "v4l2loopback kernel module is not loaded" in unloaded
    assert 'modprobe v4l2loopback video_nr=10 card_label="OBS Virtual Camera" exclusive_caps=1' in unloaded
    camera = v4l2.DeviceInfo("/dev/video0", "uvcvideo", "HD Webcam", v4l2.CAP_VIDEO_CAPTURE)
    loop = v4l2.DeviceInfo("/dev/video11", v4l2.LOOPBACK_DRIVER, "AI Background", v4l2.CAP_VIDEO_OUTPUT)
    loaded = v4l2.missing_loopback_message("/dev/video10", [camera, loop], module=tmp_path)
    assert loaded == "/dev/video10 does not exist: the v4l2loopback devices here are /dev/video11 (AI Background)"
    empty = v4l2.missing_loopback_message("/dev/video10", [camera], module=tmp_path)
    assert "v4l2loopback has no devices: reload it" in empty
    assert v4l2.missing_camera_message("/dev/video3", [camera, loop]) == \
        "camera /dev/video3 not found: the cameras here are /dev/video0 (HD Webcam)"
    assert "no camera is connected" in v4l2.missing_camera_message("/dev/video3", [loop])


def test_open_loopback_on_a_missing_device_says_how_to_get_one() -> None:
    path = "/dev/video98"
    if os.path.exists(path):
        pytest.skip(f"{path} exists here")
    with pytest.raises(DeviceError, match=r"^/dev/video98 does not exist") as e:
        v4l2.open_loopback(path, 640, 480, 30)
    assert "modprobe v4l2loopback" in str(e.value) or "v4l2loopback devices here" in str(e.value)


def test_list_devices_skips_what_is_not_v4l2(tmp_path: Path) -> None:
    (tmp_path / "video0").write_bytes(b"")  # a plain file named like a device
    os.symlink("/dev/null", tmp_path / "video1")  # a character device that is not V4L2
    assert v4l2.list_devices(tmp_path) == []
