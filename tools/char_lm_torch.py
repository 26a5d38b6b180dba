#!/usr/bin/env python3
"""The PyTorch reference of examples/char_lm.c: the same model (nn.Embedding, nn.LSTM, nn.Linear,
time-first), recipe (AdamW, warm-up + cosine schedule, clipping) and data (vocabulary, 90/10
split, and the very same training and evaluation windows, drawn with char_lm's splitmix64
stream), on the CPU with 2 threads. Prints train/validation loss at every evaluation, the wall
time of the training steps, and a last line "validation loss N.NNN".

Usage: ~/torch-venv/bin/python tools/char_lm_torch.py [--iters 2000] [--data FILE] ...
"""
import argparse
import math
import os
import time

import torch
import torch.nn as nn

MASK = (1 << 64) - 1


class SplitMix64:
    """char_lm.c's next_random: the host's window positions."""

    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def windows(ids, T, B, rng):
    """x, y [T, B] from B random windows of T + 1 ids (time-first, as char_lm.c)."""
    starts = [rng.next() % (len(ids) - T) for _ in range(B)]
    w = torch.stack([ids[s:s + T + 1] for s in starts], dim=1)  # [T + 1, B]
    return w[:-1], w[1:]


class CharLM(nn.Module):
    def __init__(self, cell, vocab, embed, hidden, layers):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.rnn = rnn(embed, hidden, layers)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):  # [T, B] -> [T, B, V]
        h, _ = self.rnn(self.embed(x))
        return self.head(h)


def lr_factor(step, warmup, total, min_ratio):
    """clgrad's CLG_LR_COSINE (src/nn/optim.c) as a multiple of the peak rate, for update
    number step (0-based)."""
    if step < warmup:
        return (step + 1) / warmup
    if step >= total:
        return min_ratio
    p = (step - warmup) / (total - warmup)
    return min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(math.pi * p))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(here, "..", "examples", "data",
                                                   "tinyshakespeare", "input.txt"))
    ap.add_argument("--cell", default="lstm", choices=["rnn", "lstm", "gru"])
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--embed", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-interval", type=int, default=500)
    ap.add_argument("--eval-windows", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    text = open(a.data, "rb").read()
    chars = sorted(set(text))
    id_of = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([id_of[c] for c in text], dtype=torch.long)
    n_train = len(text) * 9 // 10
    train, val = ids[:n_train], ids[n_train:]
    print(f"data: {a.data}, {len(text)} bytes, vocabulary of {len(chars)} bytes; "
          f"{len(train)} training, {len(val)} validation characters")

    erng = SplitMix64(a.seed ^ 0x5EED5EED5EED)
    eval_train = windows(train, a.block, a.eval_windows, erng)
    eval_val = windows(val, a.block, a.eval_windows, erng)

    model = CharLM(a.cell, len(chars), a.embed, a.hidden, a.layers)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=0.1)
    warmup = 100 if a.iters > 1000 else a.iters // 10
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, warmup, a.iters, 0.1)) if a.iters > 1 else None
    loss_fn = nn.CrossEntropyLoss()
    V = len(chars)

    def evaluate(xy):
        model.eval()
        with torch.no_grad():
            x, y = xy
            loss = loss_fn(model(x).reshape(-1, V), y.reshape(-1)).item()
        model.train()
        return loss

    rng = SplitMix64(a.seed)
    train_time, timed, last_val, running, since = 0.0, 0, float("nan"), 0.0, 0
    for it in range(1, a.iters + 1):
        x, y = windows(train, a.block, a.batch, rng)
        t0 = time.perf_counter()
        loss = loss_fn(model(x).reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if sched:
            sched.step()
        l = loss.item()
        if it > 1:
            train_time += time.perf_counter() - t0
            timed += 1
        running += l
        since += 1
        if it % a.eval_interval == 0 or it == a.iters:
            tl, vl = evaluate(eval_train), evaluate(eval_val)
            last_val = vl
            tps = timed * a.batch * a.block / train_time if train_time > 0 else 0.0
            print(f"step {it}: train loss {tl:.4f}, val loss {vl:.4f} (running train loss "
                  f"{running / since:.4f}), {tps:.0f} tokens/s", flush=True)
            running, since = 0.0, 0
    if timed:
        print(f"training: {timed} timed steps, {1e3 * train_time / timed:.2f} ms per step, "
              f"{timed * a.batch * a.block / train_time:.0f} tokens/s (the first step and the "
              f"evaluations excluded); {train_time:.1f} s of training steps, torch "
              f"{torch.__version__}, {a.threads} threads")
    print(f"validation loss {last_val:.3f}")


if __name__ == "__main__":
    main()
