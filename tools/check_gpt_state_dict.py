#!/usr/bin/env python3
"""Show that clgrad's GPT and nanoGPT's exchange state dicts (not part of CI).

1. examples/gpt_char trains a few steps and saves its checkpoint; its model tensors (the
   optimizer's .exp_avg / .exp_avg_sq state left out) load into tools/nanogpt_model.py's GPT
   with load_state_dict(strict=True): the same keys, shapes and the tied head under both
   transformer.wte.weight and lm_head.weight. PyTorch's greedy continuation of a prompt must
   equal `gpt_char --generate N --temperature 0` (clgrad's KV-cache path) character for
   character.
2. Back: the PyTorch model takes a few AdamW steps of its own, its state_dict() (both tied
   keys) is written with safetensors plus gpt_char's metadata record, gpt_char --generate
   loads it, and the greedy continuations agree again.

Run: ~/torch-venv/bin/python tools/check_gpt_state_dict.py [--build build]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nanogpt_model import GPT, GPTConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = ('.exp_avg', '.exp_avg_sq')


def greedy(model, ids, n):
    idx = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(idx[:, -model.config.block_size:])
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx[0].tolist()


def clgrad_greedy(exe, ckpt, prompt, n):
    out = subprocess.run([exe, '--generate', str(n), '--temperature', '0', '--prompt', prompt,
                          '--checkpoint', ckpt], check=True, capture_output=True)
    return out.stdout.rstrip(b'\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', default=os.path.join(ROOT, 'build'))
    args = ap.parse_args()
    exe = os.path.join(args.build, 'examples', 'gpt_char')
    prompt, n = 'ROMEO:', 40  # within one block: PyTorch's crop never triggers
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, 'clgrad.safetensors')
        subprocess.run([exe, '--iters', '30', '--eval-interval', '30', '--eval-windows', '8',
                        '--checkpoint', ckpt, '--log', os.path.join(tmp, 'log.csv')],
                       check=True, capture_output=True)
        with safe_open(ckpt, 'pt') as f:
            meta = f.metadata()
        chars = bytes.fromhex(meta['gpt_char.vocab_hex'])
        cfg = GPTConfig(block_size=int(meta['gpt_char.block']), vocab_size=len(chars),
                        n_layer=int(meta['gpt_char.n_layer']), n_head=int(meta['gpt_char.n_head']),
                        n_embd=int(meta['gpt_char.n_embd']), dropout=0.0,
                        bias=meta['gpt_char.bias'] == '1')
        sd = {k: v for k, v in load_file(ckpt).items() if not k.endswith(STATE)}
        model = GPT(cfg).eval()
        ref_keys = set(model.state_dict().keys())
        result = model.load_state_dict(sd, strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        assert torch.equal(model.lm_head.weight, sd['lm_head.weight'])
        assert model.lm_head.weight is model.transformer.wte.weight
        print(f'1. clgrad -> PyTorch: {len(sd)} tensors, keys equal to nanoGPT\'s state_dict '
              f'({len(ref_keys)}): {set(sd) == ref_keys}; load_state_dict(strict=True) ok')
        stoi = {c: i for i, c in enumerate(chars)}
        ids = [stoi[c] for c in prompt.encode()]
        torch_text = bytes(chars[i] for i in greedy(model, ids, n))
        clgrad_text = clgrad_greedy(exe, ckpt, prompt, n)
        print(f'   greedy PyTorch: {torch_text!r}\n   greedy clgrad:  {clgrad_text!r}')
        ok1 = torch_text == clgrad_text

        # 2. PyTorch trains on, writes its state_dict, clgrad reads it
        model.train()
        opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
        text = open(os.path.join(ROOT, 'examples/data/tinyshakespeare/input.txt'), 'rb').read()
        data = torch.tensor([stoi[c] for c in text[:100000]])
        g = torch.Generator().manual_seed(0)
        for _ in range(20):
            s = torch.randint(0, len(data) - cfg.block_size - 1, (12,), generator=g)
            x = torch.stack([data[i:i + cfg.block_size] for i in s])
            y = torch.stack([data[i + 1:i + 1 + cfg.block_size] for i in s])
            _, loss = model(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        back = os.path.join(tmp, 'torch.safetensors')
        sd2 = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        save_file(sd2, back, metadata={k: v for k, v in meta.items() if k.startswith('gpt_char.')})
        torch_text = bytes(chars[i] for i in greedy(model, ids, n))
        clgrad_text = clgrad_greedy(exe, back, prompt, n)
        print(f'2. PyTorch -> clgrad: {len(sd2)} tensors (both tied keys) loaded by gpt_char')
        print(f'   greedy PyTorch: {torch_text!r}\n   greedy clgrad:  {clgrad_text!r}')
        ok2 = torch_text == clgrad_text
    print('state dicts round-trip:', 'ok' if ok1 and ok2 else 'MISMATCH')
    return 0 if ok1 and ok2 else 1


if __name__ == '__main__':
    sys.exit(main())
