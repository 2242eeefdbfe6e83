"""Re-create obs_rvm/data/mobilenetv3-web/rvm_mobilenetv3_web.npz from the dequantized TF.js RVM model.

The model's weights were 8-bit in TF.js, so each float tensor holds at most 256 distinct values: it is stored as
uint8 codes into a table of those values (bit-exact, unlike a recomputed scale/offset), and the graph as ONNX
without those tensors' bytes. obs_rvm/bundled.py reverses this byte for byte: the restored file has the source's
sha256. The archive is written deterministically (fixed zip timestamps), so re-running this gives the same bytes.

    .venv/bin/python scripts/pack_bundled_model.py ../shared/models/rvm_mobilenetv3_tfjs_int8_dequant.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from obs_rvm.bundled import BUNDLE, restore_bytes

MIN_PACKED = 64
"""Smaller tensors (shapes, pads) stay inside the graph: packing them would save nothing."""


def pack(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.data_type != TensorProto.FLOAT or not tensor.raw_data or len(tensor.raw_data) < 4 * MIN_PACKED:
            continue
        values = np.frombuffer(tensor.raw_data, dtype="<f4")
        table, codes = np.unique(values, return_inverse=True)
        if len(table) > 256:
            raise SystemExit(f"{tensor.name} has {len(table)} distinct values: not an 8-bit quantized model")
        arrays[f"codes_{i}"] = codes.astype(np.uint8)
        arrays[f"table_{i}"] = table.astype("<f4")
        tensor.raw_data = b""
    arrays["graph"] = np.frombuffer(model.SerializeToString(), dtype=np.uint8)
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue(), compresslevel=9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="rvm_mobilenetv3_tfjs_int8_dequant.onnx")
    parser.add_argument("-o", "--output", type=Path, default=BUNDLE)
    args = parser.parse_args()
    source = args.source.read_bytes()
    model = onnx.load_from_string(source)
    if model.SerializeToString() != source:
        raise SystemExit("the source does not re-serialize to the same bytes: a bit-exact bundle is impossible")
    write_npz(args.output, pack(model))
    restored = restore_bytes(args.output)
    if restored != source:
        raise SystemExit("the bundle does not restore to the source bytes")
    print(f"{args.output}: {args.output.stat().st_size:,} bytes; restores {len(restored):,} bytes, sha256 "
          f"{hashlib.sha256(restored).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
