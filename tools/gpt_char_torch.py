#!/usr/bin/env python3
"""examples/gpt_char.c's model and recipe in PyTorch: nanoGPT's GPT (tools/nanogpt_model.py)
on Tiny Shakespeare's bytes with nanoGPT's CPU recipe (4 layers, 4 heads, 128 dims, block 64,
batch 12, AdamW lr 1e-3, 100 warm-up steps, cosine to 1e-4, betas 0.9/0.99, weight decay 0.1
on parameters of 2+ dims, clipping 1.0, dropout 0, no biases), random windows, the same 90/10
split, and the loss over 200 random windows of each split at the end. Prints ms per
iteration (the first excluded) and the final validation loss.

Run: ~/torch-venv/bin/python tools/gpt_char_torch.py [--iters N] [--threads 2]
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nanogpt_model import GPT, GPTConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lr_at(it, args):
    """nanoGPT's get_lr (iterations counted from 1 as clgrad's schedule counts updates)."""
    if it < args.warmup:
        return args.lr * (it + 1) / (args.warmup + 1)
    if it > args.iters:
        return args.min_lr
    ratio = (it - args.warmup) / max(1, args.iters - args.warmup)
    return args.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (args.lr - args.min_lr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', default=os.path.join(ROOT, 'examples/data/tinyshakespeare/input.txt'))
    ap.add_argument('--iters', type=int, default=2000)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--batch', type=int, default=12)
    ap.add_argument('--block', type=int, default=64)
    ap.add_argument('--n-layer', type=int, default=4)
    ap.add_argument('--n-head', type=int, default=4)
    ap.add_argument('--n-embd', type=int, default=128)
    ap.add_argument('--dropout', type=float, default=0.0)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--min-lr', type=float, default=1e-4)
    ap.add_argument('--warmup', type=int, default=100)
    ap.add_argument('--eval-windows', type=int, default=200)
    ap.add_argument('--seed', type=int, default=1)
    args = ap.parse_args()
    if args.warmup >= args.iters:  # as gpt_char: a run shorter than the warm-up has none
        args.warmup = 0
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    text = open(args.data, 'rb').read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.int64)
    n_train = len(ids) * 9 // 10
    train, val = torch.from_numpy(ids[:n_train]), torch.from_numpy(ids[n_train:])
    rng = np.random.default_rng(args.seed)

    def windows(split, n):
        starts = rng.integers(0, len(split) - args.block, size=n)
        x = torch.stack([split[s:s + args.block] for s in starts])
        y = torch.stack([split[s + 1:s + 1 + args.block] for s in starts])
        return x, y

    cfg = GPTConfig(block_size=args.block, vocab_size=len(chars), n_layer=args.n_layer,
                    n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout, bias=False)
    model = GPT(cfg)
    opt = model.configure_optimizers(0.1, args.lr, (0.9, 0.99))
    ex = {name: windows(split, args.eval_windows) for name, split in (('train', train), ('val', val))}
    times = []
    model.train()
    for it in range(args.iters):
        for g in opt.param_groups:
            g['lr'] = lr_at(it, args)
        x, y = windows(train, args.batch)
        t0 = time.perf_counter()
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        losses = {k: model(*v)[1].item() for k, v in ex.items()}
    ms = 1e3 * sum(times[1:]) / max(1, len(times) - 1)
    print(f'torch {torch.__version__}, {args.threads} threads: {args.iters} iterations, '
          f'{ms:.2f} ms per iteration ({args.batch * args.block / ms * 1e3:.0f} tokens/s), '
          f'train loss {losses["train"]:.4f}')
    print(f'validation loss {losses["val"]:.3f}')


if __name__ == '__main__':
    main()
