#!/usr/bin/env python3
"""The sequence probes of build/tools/bench-seq side by side with the same models in PyTorch.

For each probe, in alternating rounds so that load from other processes falls on both alike:
clgrad's training step on the selected OpenCL device (bench-seq: kernels per step, programs,
cold and warm first step, ms per step) and the same model's step in PyTorch on the CPU with 2
threads (the PyPI wheel in a venv outside the repo, --torch-python), then the medians and
the ratio. The PyTorch models are written to match bench-seq.c op for op: the same sizes, the
LSTM from one GEMM of [x, h] and four slices, the blocks pre-norm with causal attention and a
tanh-GELU MLP, Adam, a mean cross-entropy.

usage: tools/bench-seq.py [--probes rnn:64,lstm:64,block,stack] [--rounds N] [--steps N]
                          [--build DIR] [--torch-python PY]
The worker (--worker PROBE) is this same file run under PyTorch's Python.
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
V = 65


def torch_model(probe, T):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class RNN(nn.Module):
        def __init__(self, lstm):
            super().__init__()
            H = 256
            self.lstm, self.H = lstm, H
            self.emb = nn.Embedding(V, H)
            self.w = nn.Linear(2 * H, 4 * H) if lstm else None
            self.whh = None if lstm else nn.Linear(H, H)
            self.head = nn.Linear(H, V)

        def forward(self, x, y):  # x, y: [T, B]
            h = torch.zeros(x.shape[1], self.H)
            c = h
            loss = 0.0
            for t in range(x.shape[0]):
                e = self.emb(x[t])
                if self.lstm:
                    gates = self.w(torch.cat([e, h], 1))
                    i, f, g, o = gates.split(self.H, 1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                else:
                    h = torch.tanh(e + self.whh(h))
                loss = loss + F.cross_entropy(self.head(h), y[t])
            return loss / x.shape[0]

    class LSTMLayer(nn.Module):
        """torch.nn.LSTM's own fast path, the peer of clgrad's clg_recurrent probe."""

        def __init__(self):
            super().__init__()
            H = 256
            self.emb, self.lstm, self.head = nn.Embedding(V, H), nn.LSTM(H, H), nn.Linear(H, V)

        def forward(self, x, y):  # x, y: [T, B]
            out, _ = self.lstm(self.emb(x))
            return F.cross_entropy(self.head(out).view(-1, V), y.view(-1))

    class Block(nn.Module):
        def __init__(self, C, NH):
            super().__init__()
            self.NH = NH
            self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.attn, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.fc, self.fc2 = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x, mask):
            B, T, C = x.shape
            q, k, v = self.attn(self.ln1(x)).view(B, T, 3, self.NH, C // self.NH).permute(2, 0, 3, 1, 4)
            s = (q @ k.transpose(-1, -2)) * (1.0 / (C // self.NH) ** 0.5) + mask
            o = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, C)
            x = x + self.proj(o)
            return x + self.fc2(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self, layers, T=64, C=128, NH=4):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, C), nn.Parameter(torch.zeros(T, C))
            self.blocks = nn.ModuleList(Block(C, NH) for _ in range(layers))
            self.ln_f, self.head = nn.LayerNorm(C), nn.Linear(C, V, bias=False)
            self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1))

        def forward(self, x, y):  # x, y: [B, T]
            h = self.wte(x) + self.wpe
            for b in self.blocks:
                h = b(h, self.mask)
            return F.cross_entropy(self.head(self.ln_f(h)).view(-1, V), y.view(-1))

    if probe in ("rnn", "lstm"):
        net, shape = RNN(probe == "lstm"), (T, 32)
    elif probe == "lstm-layer":
        net, shape = LSTMLayer(), (T, 32)
    else:
        net, shape = GPT(1 if probe == "block" else 4), (12, 64)
    n = shape[0] * shape[1]
    x = (torch.arange(n) * 7 + 3).remainder(V).view(shape)
    y = (torch.arange(n) * 11 + 5).remainder(V).view(shape)
    return net, x, y


def worker(probe, T, steps, threads):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net, x, y = torch_model(probe, T)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        loss = net(x, y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(2):
        step()
    ms = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms)


def run_clgrad(build, tok, steps):
    exe = os.path.join(build, "tools", "bench-seq")
    out = subprocess.run([exe, "--probes", tok, "--runs", str(min(steps, 16))],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == tok and len(f) >= 10 and f[1] != "failed":
            return {"kernels": int(f[2]), "programs": int(f[4]), "cold_ms": float(f[5]),
                    "warm_ms": float(f[7]), "step_ms": float(f[9])}
    raise RuntimeError(f"bench-seq {tok}: {out.strip()}")


def run_torch(python, probe, T, steps):
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([python, os.path.abspath(__file__), "--worker", probe, "--T", str(T),
                          "--steps", str(steps)], capture_output=True, text=True, env=env)
    m = re.search(r"RESULT ([0-9.]+)", out.stdout)
    if out.returncode != 0 or not m:
        print(f"  pytorch {probe}: failed: {(out.stderr or out.stdout).strip()[-300:]}",
              file=sys.stderr)
        return None
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker")
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--probes", default="rnn:64,rnn:256,lstm:64,lstm:256,lstm-layer:64,lstm-layer:256,block,stack")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--torch-python", default="/usr/bin/python3")
    a = ap.parse_args()
    if a.worker:
        print(f"RESULT {worker(a.worker, a.T, a.steps, 2):.3f}")
        return 0
    v = subprocess.run([a.torch_python, "-c", "import torch; print(torch.__version__, torch.__file__)"],
                       capture_output=True, text=True)
    torch_ok = v.returncode == 0
    if torch_ok:
        debian = " (Debian's python3-torch, the fallback)" if "/usr/lib/python3" in v.stdout else ""
        print(f"PyTorch: {a.torch_python}: {v.stdout.strip()}{debian}, 2 threads")
    else:
        print(f"PyTorch not found for {a.torch_python}: pip install torch in a venv, then "
              "--torch-python", file=sys.stderr)
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"{'probe':10s} {'kernels':>8s} {'programs':>9s} {'cold 1st':>10s} {'warm 1st':>10s} "
          f"{'clgrad ms':>10s} {'torch ms':>9s} {'torch/clgrad':>12s}")
    for tok in a.probes.split(","):
        probe, _, t = tok.partition(":")
        T = int(t) if t else 64
        cl, th = [], []
        for _ in range(a.rounds):
            cl.append(run_clgrad(a.build, tok, a.steps))
            if torch_ok:
                r = run_torch(a.torch_python, probe, T, a.steps)
                if r is not None:
                    th.append(r)
        med = lambda k: statistics.median(c[k] for c in cl)
        tm = statistics.median(th) if th else float("nan")
        print(f"{tok:10s} {cl[-1]['kernels']:8d} {cl[-1]['programs']:9d} {med('cold_ms') / 1e3:9.1f}s "
              f"{med('warm_ms') / 1e3:9.2f}s {med('step_ms'):10.1f} {tm:9.1f} {tm / med('step_ms'):12.2f}",
              flush=True)
    print(f"medians of {a.rounds} rounds; ms: median step after the first; torch/clgrad > 1: clgrad "
          "faster. load average after: " f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
