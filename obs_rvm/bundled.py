"""The model that ships inside the package, so obs-rvm keys video on a machine that cannot download anything.

It is RVM MobileNetV3 from the project's TF.js release (GPL-3.0; see data/mobilenetv3-web/PROVENANCE.md), whose
weights are 8-bit: each float tensor is stored as uint8 codes into a table of its (at most 256) values, and the
graph as ONNX without those bytes (scripts/pack_bundled_model.py). Restoring puts every value back bit for bit, so
the .onnx written here has the source file's sha256: one stable identity for the graph and engine caches.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import ModelError
from .paths import atomic_write

DATA = Path(__file__).with_name("data")
BUNDLE = DATA / "mobilenetv3-web" / "rvm_mobilenetv3_web.npz"


def restore_bytes(bundle: Path = BUNDLE) -> bytes:
    """The serialized ONNX model a bundle holds."""
    import numpy as np
    import onnx

    try:
        with np.load(bundle, allow_pickle=False) as packed:
            model = onnx.ModelProto()
            model.ParseFromString(packed["graph"].tobytes())
            for key in packed.files:
                if key.startswith("codes_"):
                    index = int(key.removeprefix("codes_"))
                    table = packed[f"table_{index}"].astype("<f4")
                    model.graph.initializer[index].raw_data = table[packed[key]].tobytes()
    except FileNotFoundError as e:
        raise ModelError(f"the bundled model is missing from this installation ({bundle}): reinstall obs-rvm") from e
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise ModelError(f"the bundled model {bundle} is damaged ({e}): reinstall obs-rvm") from e
    return model.SerializeToString()


def restore(bundle: Path, dest: Path, sha256: str) -> Path:
    """Write the bundle's model to `dest`, which appears only once its bytes have the published sha256."""
    data = restore_bytes(bundle)
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise ModelError(f"the bundled model {bundle} restores to sha256 {got[:12]}…, expected {sha256[:12]}…: "
                         f"reinstall obs-rvm")
    try:
        with atomic_write(dest) as out:
            out.write(data)
    except OSError as e:
        raise ModelError(f"cannot write the bundled model to {dest}: {e.strerror or e}; free some space or set "
                         f"OBS_RVM_CACHE_DIR to a writable folder") from e
    return dest
