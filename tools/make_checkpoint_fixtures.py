#!/usr/bin/env python3
"""Make and check the fixtures that prove clgrad checkpoints and PyTorch state_dicts interoperate.

  tests/fixtures/torch_mlp.safetensors     a torch.nn MLP 6 -> 5 -> 3 (Linear, ReLU, Linear) with
                                           seeded default initialisation, its state_dict written
                                           here by safetensors.torch.save_file (no metadata);
                                           tests/test-checkpoint.c loads it with
                                           clg_checkpoint_load and runs the same model.
  tests/fixtures/clgrad_mlp.safetensors    a clgrad checkpoint of the same model with Adam state,
                                           written by `test-checkpoint --write-fixture PATH`
                                           (parameters and state by formula, step 7, random
                                           counter 3); loaded here with safetensors.torch.load_file,
                                           checked name by name and value by value, and loaded
                                           into the torch model. The C test checks that clgrad
                                           still writes exactly these tensors.
  tests/fixtures/torch_mlp_expected.h      the fixed inputs and what PyTorch computes from each
                                           file on them; the C test compares its outputs with these.

The clgrad-side values are formulas in both places (here: formula(); tests/test-checkpoint.c:
formula()); every value is a small integer times a power of two, so both sides agree exactly.

Run (needs PyTorch, never needed by the library or CI):
    python3 -m venv /tmp/st-venv
    /tmp/st-venv/bin/pip install torch safetensors numpy
    meson setup build && ninja -C build tests/test-checkpoint
    /tmp/st-venv/bin/python tools/make_checkpoint_fixtures.py --writer build/tests/test-checkpoint
--writer runs the C writer on the default device (CLGRAD_DEVICE picks another). Add --check to
verify the committed fixtures without rewriting them (exit status 1 on a difference); with
--check and no --writer, only the committed files are checked against each other.
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
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "tests", "fixtures"))
TORCH_FIXTURE = os.path.join(FIXTURES, "torch_mlp.safetensors")
CLGRAD_FIXTURE = os.path.join(FIXTURES, "clgrad_mlp.safetensors")
HEADER = os.path.join(FIXTURES, "torch_mlp_expected.h")

BATCH, IN, HIDDEN, OUT = 4, 6, 5, 3
SEED = 20240611
PARAMS = {"fc1.weight": (HIDDEN, IN), "fc1.bias": (HIDDEN,),
          "fc2.weight": (OUT, HIDDEN), "fc2.bias": (OUT,)}
STATE_KEYS = ("exp_avg", "exp_avg_sq")
CLGRAD_META = {"format": "pt", "clgrad.format": "clgrad checkpoint v1",
               "clgrad.optimizer": "adam", "clgrad.optimizer_steps": "7",
               "clgrad.rng_offset": "3"}


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(IN, HIDDEN)
        self.fc2 = torch.nn.Linear(HIDDEN, OUT)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def inputs():
    """Fixed inputs, exact in binary, half of them negative so that ReLU matters."""
    k = np.arange(BATCH * IN, dtype=np.int64)
    return (((k * 5) % 17 - 8).astype(np.float32) * np.float32(0.125)).reshape(BATCH, IN)


def formula(name, n):
    """tests/test-checkpoint.c: formula(name, k) for k in 0 .. n-1."""
    k, h = np.arange(n, dtype=np.int64), len(name)
    if "exp_avg_sq" in name:
        return ((k * 5 + h) % 9).astype(np.float32) * np.float32(0.03125)
    if "exp_avg" in name:
        return ((k * 3 + h) % 11 - 5).astype(np.float32) * np.float32(0.0078125)
    return ((k * 7 + h) % 13 - 6).astype(np.float32) * np.float32(0.0625)


def clgrad_expected():
    """Every tensor the clgrad fixture must hold: name -> float32 array."""
    t = {}
    for name, shape in PARAMS.items():
        n = int(np.prod(shape))
        t[name] = formula(name, n).reshape(shape)
        for key in STATE_KEYS:
            t[f"{name}.{key}"] = formula(f"{name}.{key}", n).reshape(shape)
    return t


def outputs(state_dict):
    model = MLP()
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(inputs())).numpy()


def make_torch_fixture(path):
    torch.manual_seed(SEED)
    model = MLP()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)


def check_clgrad_file(path):
    """Load with safetensors.torch.load_file and compare with the formulas; list of problems."""
    problems = []
    loaded = load_file(path)
    want = clgrad_expected()
    if sorted(loaded) != sorted(want):
        problems.append(f"{path}: tensors {sorted(loaded)}, expected {sorted(want)}")
    for name, value in want.items():
        got = loaded.get(name)
        if got is None:
            continue
        if got.dtype != torch.float32 or tuple(got.shape) != value.shape:
            problems.append(f"{path}: {name} is {got.dtype} {tuple(got.shape)}")
        elif not np.array_equal(got.numpy(), value):
            problems.append(f"{path}: {name} values differ from the formula")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    for key, value in CLGRAD_META.items():
        if meta.get(key) != value:
            problems.append(f"{path}: metadata {key} = {meta.get(key)!r}, expected {value!r}")
    return problems


def c_array(name, values):
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    # %.9e round-trips any float32; the trailing f keeps the literal a float.
    items = [f"{float(x):.9e}f" for x in v]
    lines = ["    " + ", ".join(items[i:i + 4]) + "," for i in range(0, len(items), 4)]
    return f"static const float {name}[{len(items)}] = {{\n" + "\n".join(lines) + "\n};\n"


def header_text(torch_out, clgrad_out):
    return (
        "/* Generated by tools/make_checkpoint_fixtures.py; do not edit. The MLP 6 -> 5 -> 3\n"
        " * (Linear, ReLU, Linear) on fixed inputs: torch_mlp_outputs is what PyTorch computes with\n"
        " * the weights in torch_mlp.safetensors, clgrad_mlp_outputs what it computes with the\n"
        " * weights it read from clgrad_mlp.safetensors. */\n"
        "#ifndef CLG_TEST_TORCH_MLP_EXPECTED_H\n"
        "#define CLG_TEST_TORCH_MLP_EXPECTED_H\n\n"
        f"#define MLP_BATCH {BATCH}\n#define MLP_IN {IN}\n#define MLP_HIDDEN {HIDDEN}\n"
        f"#define MLP_OUT {OUT}\n\n"
        "/* (MLP_BATCH, MLP_IN) */\n" + c_array("mlp_inputs", inputs()) + "\n"
        "/* (MLP_BATCH, MLP_OUT) */\n" + c_array("torch_mlp_outputs", torch_out) + "\n"
        "/* (MLP_BATCH, MLP_OUT) */\n" + c_array("clgrad_mlp_outputs", clgrad_out) + "\n"
        "#endif\n"
    )


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--writer", help="path of the built test-checkpoint (writes the clgrad file)")
    ap.add_argument("--check", action="store_true", help="verify, do not rewrite")
    args = ap.parse_args()
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        # PyTorch's side: regenerated unless checking (default initialisation may change
        # between PyTorch versions; the committed file is what the C test reads).
        if not args.check:
            make_torch_fixture(TORCH_FIXTURE)
        with safe_open(TORCH_FIXTURE, framework="pt") as f:
            if f.metadata():
                problems.append(f"{TORCH_FIXTURE}: has metadata {f.metadata()}")
        torch_sd = load_file(TORCH_FIXTURE)
        torch_out = outputs(torch_sd)

        # clgrad's side.
        if args.writer:
            written = os.path.join(tmp, "clgrad_mlp.safetensors")
            subprocess.run([args.writer, "--write-fixture", written], check=True)
            problems += check_clgrad_file(written)
            if args.check:
                if not same_bytes(written, CLGRAD_FIXTURE):
                    problems.append(f"{CLGRAD_FIXTURE}: clgrad now writes different bytes")
            elif not problems:
                shutil.copyfile(written, CLGRAD_FIXTURE)
        problems += check_clgrad_file(CLGRAD_FIXTURE)
        loaded = load_file(CLGRAD_FIXTURE)
        clgrad_out = outputs({k: loaded[k] for k in PARAMS})

        text = header_text(torch_out, clgrad_out)
        if args.check:
            with open(HEADER) as f:
                if f.read() != text:
                    problems.append(f"{HEADER}: expected outputs differ from PyTorch's")
        elif not problems:
            with open(HEADER, "w") as f:
                f.write(text)

    for p in problems:
        print("FAIL:", p, file=sys.stderr)
    if problems:
        return 1
    print("checked" if args.check else "written", TORCH_FIXTURE, CLGRAD_FIXTURE, HEADER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
