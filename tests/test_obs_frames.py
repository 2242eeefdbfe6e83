"""What the filter hands libobs to copy: gs_texture_set_image reads (height - 1) * linesize + 4 * width bytes from the
pointer it gets, so anything but a C-contiguous uint8 RGBA buffer of the texture's own size would make libobs read
past it (or read the wrong pixels). These run against the real libobs (loaded outside OBS) and stop before any
graphics call."""

from __future__ import annotations

import numpy as np
import pytest

libobs = pytest.importorskip("obs_rvm.obs.libobs", reason="needs libobs (apt-get install libobs0)",
                             exc_type=OSError)
from obs_rvm.obs.frames import DynamicTexture  # noqa: E402


@pytest.mark.parametrize("bad", [
    np.zeros((4, 6, 4), np.uint8)[:, ::2],  # a strided view: its rows are not 4 * width bytes apart
    np.zeros((4, 3, 3), np.uint8),  # RGB: 3/4 of the bytes libobs reads
    np.zeros((4, 3, 4), np.float32),  # not bytes
    np.zeros((4, 3), np.uint8),
])
def test_a_texture_takes_only_c_contiguous_uint8_rgba(bad):
    texture = DynamicTexture()
    with pytest.raises(ValueError, match="C-contiguous uint8 RGBA"):
        texture.upload(bad)
    assert texture.handle is None  # refused before any graphics object was made
