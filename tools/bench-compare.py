#!/usr/bin/env python3
"""Training throughput of clgrad side by side with PyTorch (CPU) and tinygrad (OpenCL).

One invocation measures, in alternating rounds so that load from other processes falls on
every framework alike:
  - clgrad's MNIST MLP (784-128-64-10, batch 128) and classic CNN (batch 64) training steps on
    the selected OpenCL device (build/tools/bench-train), and with --models charlm the
    character LM's step (examples/char_lm: embedding 128, LSTM 2 x 256, linear 65, 12 windows
    of 64 characters, AdamW with gradient clipping; samples are windows),
  - the same models and steps in PyTorch on the CPU with 1 and with 2 threads, its best
    counting (the PyPI wheel in a venv outside the repo, --torch-python; Debian's
    python3-torch is the fallback and is named when used; OPENBLAS_NUM_THREADS=1,
    OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset: with them PyTorch's and OpenBLAS's threads
    fight over the cores), or with --torch-device cuda on the GPU instead,
  - the same in tinygrad on the first OpenCL platform's device (pip install tinygrad; not
    for charlm),
and prints samples/s (median over rounds, each round itself a median of timed blocks) and the
ratios. PyTorch and tinygrad are optional: missing ones are reported and skipped.

usage: tools/bench-compare.py [--rounds N] [--steps N] [--models mlp,cnn,charlm] [--build DIR]
                              [--torch-python PY] [--torch-device cpu|cuda]
                              [--tinygrad-python PY]
The workers (--worker torch|tinygrad) are this same file run under the framework's Python.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BATCH = {"mlp": 128, "cnn": 64, "charlm": 12}


# ---------------------------------------------------------------- workers (framework side)

def torch_worker(model, steps, blocks, threads, device="cpu"):
    import torch
    import torch.nn as nn
    torch.set_num_threads(threads)
    if device == "cuda":
        # the same precision as clgrad's fp32 GEMMs: no TF32 tensor-core shortcut
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    b = BATCH[model]
    if model == "charlm":
        return time_blocks(charlm_torch_step(torch, nn, device), b, steps, blocks)
    if model == "mlp":
        net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                            nn.Linear(64, 10))
        x = torch.rand(b, 784)
    else:
        net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(3136, 10))
        x = torch.rand(b, 1, 28, 28)
    y = torch.randint(0, 10, (b,))
    net, x, y = net.to(device), x.to(device), y.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return time_blocks(step, b, steps, blocks)


def charlm_torch_step(torch, nn, device):
    """tools/char_lm_torch.py's training step on random ids [64, 12] (time-first)."""
    V, T, B = 65, 64, BATCH["charlm"]

    class CharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.rnn = nn.Embedding(V, 128), nn.LSTM(128, 256, 2)
            self.head = nn.Linear(256, V)

        def forward(self, x):
            return self.head(self.rnn(self.embed(x))[0])

    net = CharLM().to(device)
    x = torch.randint(0, V, (T, B), device=device)
    y = torch.randint(0, V, (T, B), device=device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x).reshape(-1, V), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step


def tinygrad_worker(model, steps, blocks):
    os.environ.setdefault("DEV", "CL")
    from tinygrad import Tensor, TinyJit, nn
    from tinygrad.helpers import Context
    from tinygrad.nn.optim import Adam
    from tinygrad.nn.state import get_parameters
    Tensor.manual_seed(0)
    b = BATCH[model]

    class MLP:
        def __init__(self):
            self.l1, self.l2, self.l3 = nn.Linear(784, 128), nn.Linear(128, 64), nn.Linear(64, 10)

        def __call__(self, x):
            return self.l3(self.l2(self.l1(x).relu()).relu())

    class CNN:
        def __init__(self):
            self.c1, self.c2 = nn.Conv2d(1, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)
            self.fc = nn.Linear(3136, 10)

        def __call__(self, x):
            x = self.c1(x).relu().max_pool2d(2)
            x = self.c2(x).relu().max_pool2d(2)
            return self.fc(x.flatten(1))

    net = MLP() if model == "mlp" else CNN()
    opt = Adam(get_parameters(net), lr=1e-3)
    shape = (b, 784) if model == "mlp" else (b, 1, 28, 28)
    x = Tensor.rand(*shape).realize()
    y = Tensor.randint(b, high=10).realize()

    @TinyJit
    @Context(TRAINING=1)
    def jit_step():
        opt.zero_grad()
        loss = net(x).sparse_categorical_crossentropy(y)
        loss.backward()
        opt.step()
        return loss.realize()

    return time_blocks(lambda: jit_step().item(), b, steps, blocks)


def time_blocks(step, batch, steps, blocks):
    for _ in range(3):  # compile / warm up
        step()
    rates = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * batch / (time.perf_counter() - t0))
    return statistics.median(rates)


# ---------------------------------------------------------------- driver

def run_clgrad(build, model, steps, blocks):
    exe = os.path.join(build, "tools", "bench-train")
    out = subprocess.run([exe, "--model", model, "--steps", str(steps), "--runs", str(blocks)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+) samples/s", out)
    k = re.search(r"(\d+) kernels per step", out)
    return float(m.group(1)), int(k.group(1))


def framework_env():
    env = dict(os.environ)
    env["OPENBLAS_NUM_THREADS"] = "1"
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    return env


def run_worker(python, which, model, steps, blocks, threads=2, device="cpu"):
    if not python:
        return None
    env = framework_env()
    env["OMP_NUM_THREADS"] = str(threads)
    try:
        out = subprocess.run([python, os.path.abspath(__file__), "--worker", which, "--models",
                              model, "--steps", str(steps), "--blocks", str(blocks),
                              "--threads", str(threads), "--torch-device", device],
                             capture_output=True, text=True, env=env, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"  {which}: not run ({e})", file=sys.stderr)
        return None
    m = re.search(r"RESULT ([0-9.]+)", out.stdout)
    if out.returncode != 0 or not m:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["?"]
        print(f"  {which} {model}: failed: {tail[0]}", file=sys.stderr)
        return None
    return float(m.group(1))


def has_module(python, module):
    if not python:
        return False
    r = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
    return r.returncode == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["torch", "tinygrad"])
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch worker threads (worker mode)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--torch-python", default="/usr/bin/python3")
    ap.add_argument("--torch-device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--tinygrad-python", default=os.environ.get("TINYGRAD_PYTHON", sys.executable))
    a = ap.parse_args()
    if a.worker:
        if a.worker == "torch":
            r = torch_worker(a.models, a.steps, a.blocks, a.threads, a.torch_device)
        else:
            r = tinygrad_worker(a.models, a.steps, a.blocks)
        print(f"RESULT {r:.1f}")
        return 0

    torch_py = a.torch_python if has_module(a.torch_python, "torch") else None
    tg_py = a.tinygrad_python if has_module(a.tinygrad_python, "tinygrad") else None
    if not torch_py:
        print(f"PyTorch not found for {a.torch_python}: apt-get install python3-torch", file=sys.stderr)
    if not tg_py:
        print(f"tinygrad not found for {a.tinygrad_python}: pip install tinygrad "
              "(or --tinygrad-python)", file=sys.stderr)
    if torch_py:
        v = subprocess.run([torch_py, "-c", "import torch; print(torch.__version__, torch.__file__)"],
                           capture_output=True, text=True).stdout.strip()
        debian = " (Debian's python3-torch, the fallback)" if "/usr/lib/python3" in v else ""
        print(f"PyTorch: {torch_py}: {v}{debian}")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    for model in a.models.split(","):
        res = {"clgrad": [], "pytorch-1t": [], "pytorch-2t": [], "pytorch-cuda": [],
               "tinygrad": []}
        kernels = 0
        if a.torch_device == "cuda":
            peers = (("pytorch-cuda", torch_py, "torch", 2), ("tinygrad", tg_py, "tinygrad", 2))
        else:
            peers = (("pytorch-1t", torch_py, "torch", 1), ("pytorch-2t", torch_py, "torch", 2),
                     ("tinygrad", tg_py, "tinygrad", 2))
        if model == "charlm":  # no tinygrad LSTM here
            peers = tuple(p for p in peers if p[0] != "tinygrad")
        for r in range(a.rounds):
            rate, kernels = run_clgrad(a.build, model, a.steps, a.blocks)
            res["clgrad"].append(rate)
            for name, py, which, th in peers:
                v = run_worker(py, which, model, a.steps, a.blocks, th, a.torch_device)
                if v is not None:
                    res[name].append(v)
            print(f"  {model} round {r + 1}: " + "  ".join(
                f"{k} {v[-1]:.0f}" for k, v in res.items() if v), flush=True)
        med = {k: statistics.median(v) for k, v in res.items() if v}
        print(f"{model} (batch {BATCH[model]}), samples/s, median of {a.rounds} rounds:")
        for k, v in med.items():
            extra = f"  ({kernels} kernels per step)" if k == "clgrad" else ""
            print(f"  {k:12s} {v:10.0f}{extra}")
        if "pytorch-cuda" in med:
            print(f"  clgrad / PyTorch on CUDA: {med['clgrad'] / med['pytorch-cuda']:.2f}x")
        best_torch = max((med[k] for k in ("pytorch-1t", "pytorch-2t") if k in med), default=None)
        if best_torch:
            print(f"  clgrad / PyTorch (best of 1 and 2 threads): {med['clgrad'] / best_torch:.2f}x")
        if "tinygrad" in med:
            print(f"  clgrad / tinygrad: {med['clgrad'] / med['tinygrad']:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
