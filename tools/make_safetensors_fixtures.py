#!/usr/bin/env python3
"""Make and check the safetensors fixtures that prove clgrad and PyTorch read each other's files.

  tests/fixtures/torch_written.safetensors   written here by safetensors.torch.save_file;
                                             tests/test-safetensors.c reads it and checks that
                                             clgrad writes the same tensors byte for byte.
  tests/fixtures/clgrad_written.safetensors  written by clgrad (test-safetensors --write-fixture),
                                             loaded here with safetensors.torch.load_file and
                                             checked value by value; the C test checks that
                                             clgrad still writes exactly these bytes.

The tensors are defined by formulas in both places (here and in tests/test-safetensors.c);
every value is computed in numpy with one IEEE operation per element, as the C code does, so
both sides agree bit for bit. Change one side, change the other.

Run (needs PyTorch, never needed by the library or CI; the CPU wheel index is not required):
    python3 -m venv /tmp/st-venv
    /tmp/st-venv/bin/pip install torch safetensors numpy
    meson setup build && ninja -C build tests/test-safetensors
    /tmp/st-venv/bin/python tools/make_safetensors_fixtures.py --writer build/tests/test-safetensors
Add --check to verify the committed fixtures without rewriting them (exit status 1 on a
difference). Without --writer only the committed clgrad fixture is checked.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "tests", "fixtures"))
TORCH_FIXTURE = os.path.join(FIXTURES, "torch_written.safetensors")
CLGRAD_FIXTURE = os.path.join(FIXTURES, "clgrad_written.safetensors")

# Exercises serde_json's escaping: quote, backslash, \t, \n, a \u00XX control, UTF-8, '/'.
TORCH_META = {"note": 'clgrad fixture: "quotes", \\ backslash, tab\t, newline\n, \x01, é, /'}
# One entry only: the Python library writes several in hash order, which is random.
CLGRAD_META = {"format": "pt"}

f32, f64 = np.float32, np.float64


def torch_tensors():
    """The tensors PyTorch writes (tests/test-safetensors.c: torch_values)."""
    i = np.arange
    t = {
        "fc1.weight": (i(12, dtype=f32) - f32(5)) * f32(0.25),
        "fc1.bias": i(3, dtype=f32) * f32(-0.5),
        "fc2.weight": i(6, dtype=f32) / f32(3),
        "step": np.array(1234567890123, dtype=np.int64),
        "labels": i(5, dtype=np.int32) - np.int32(2),
        "pixels": i(6, dtype=np.uint8) * np.uint8(40),
        "halves": i(4, dtype=f64) / f64(7),
        "empty": np.zeros((0, 4), dtype=f32),
        "ünïcode.name": np.ones(2, dtype=f32),
    }
    shapes = {"fc1.weight": (3, 4), "fc2.weight": (2, 3), "pixels": (2, 3)}
    # .copy(): a contiguous array that keeps 0-d arrays 0-d (ascontiguousarray would not)
    return {k: torch.from_numpy(v.reshape(shapes.get(k, v.shape)).copy()) for k, v in t.items()}


def clgrad_expected():
    """What clgrad writes (tests/test-safetensors.c: clgrad_values)."""
    i = np.arange
    return {
        "fc1.weight": ((i(12, dtype=f32) - f32(5)) * f32(0.0625)).reshape(4, 3),
        "fc1.bias": i(4, dtype=f32) * f32(1.5) - f32(2),
        "fc2.weight": (i(8, dtype=f32) / f32(7)).reshape(2, 4),
        "optimizer.step": np.array(3000000000, dtype=np.int64),
        "optimizer.fc1.weight.exp_avg": (i(12, dtype=f32) * f32(-0.001)).reshape(4, 3),
        "labels": (i(6, dtype=np.int32) * 7) % 10 - 3,
        "mask": np.array([0, 128, 255], dtype=np.uint8),
        "scale": i(2, dtype=f64) / f64(3),
        "ß.unicode": np.array([42], dtype=f32),
        "empty": np.zeros((0,), dtype=f32),
    }


def check_clgrad_file(path):
    """Load clgrad's file the way a PyTorch user would, and check every tensor."""
    loaded = load_file(path)
    want = clgrad_expected()
    problems = []
    if set(loaded) != set(want):
        problems.append(f"names differ: {sorted(loaded)} vs {sorted(want)}")
    for name, w in want.items():
        got = loaded.get(name)
        if got is None:
            continue
        g = got.numpy()
        if g.dtype != w.dtype or g.shape != w.shape:
            problems.append(f"{name}: {g.dtype}{list(g.shape)} vs {w.dtype}{list(w.shape)}")
        elif g.tobytes() != w.tobytes():
            problems.append(f"{name}: values differ: {g.ravel()[:6]} vs {w.ravel()[:6]}")
    with safe_open(path, framework="pt") as f:
        if f.metadata() != CLGRAD_META:
            problems.append(f"metadata {f.metadata()} vs {CLGRAD_META}")
    # The library itself, given the same tensors, writes the same bytes.
    with open(path, "rb") as f:
        data = f.read()
    if save(loaded, metadata=CLGRAD_META) != data:
        problems.append("safetensors.torch.save writes different bytes for the same tensors")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writer", help="path of the built test-safetensors executable")
    ap.add_argument("--check", action="store_true", help="verify, do not rewrite, the fixtures")
    args = ap.parse_args()
    failed = False
    print(f"torch {torch.__version__}, safetensors {__import__('safetensors').__version__}")

    tensors = torch_tensors()
    if args.check:
        with open(TORCH_FIXTURE, "rb") as f:
            if f.read() != save(tensors, metadata=TORCH_META):
                print(f"FAIL {TORCH_FIXTURE}: PyTorch now writes different bytes")
                failed = True
            else:
                print(f"ok   {TORCH_FIXTURE}")
    else:
        os.makedirs(FIXTURES, exist_ok=True)
        save_file(tensors, TORCH_FIXTURE, metadata=TORCH_META)
        os.chmod(TORCH_FIXTURE, 0o644)
        back = load_file(TORCH_FIXTURE)
        assert all(torch.equal(back[k], v) for k, v in tensors.items())
        print(f"wrote {TORCH_FIXTURE}")

    if args.writer:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "clgrad.safetensors")
            subprocess.run([args.writer, "--write-fixture", out], check=True)
            problems = check_clgrad_file(out)
            if problems:
                print("FAIL clgrad-written file:\n  " + "\n  ".join(problems))
                failed = True
            elif args.check:
                with open(out, "rb") as a, open(CLGRAD_FIXTURE, "rb") as b:
                    if a.read() != b.read():
                        print(f"FAIL {CLGRAD_FIXTURE}: clgrad now writes different bytes")
                        failed = True
                    else:
                        print(f"ok   {CLGRAD_FIXTURE} (clgrad writes it unchanged)")
            else:
                shutil.copyfile(out, CLGRAD_FIXTURE)
                print(f"wrote {CLGRAD_FIXTURE} (checked with safetensors.torch.load_file)")
    problems = check_clgrad_file(CLGRAD_FIXTURE) if os.path.exists(CLGRAD_FIXTURE) else [
        "missing"]
    if problems:
        print(f"FAIL {CLGRAD_FIXTURE}:\n  " + "\n  ".join(problems))
        failed = True
    else:
        print(f"ok   {CLGRAD_FIXTURE} loads in PyTorch with the expected values")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
