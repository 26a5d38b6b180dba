#!/usr/bin/env python3
"""Make the tiny-GPT fixture that tests/test-transformer.c checks clgrad's GPT against.

  tests/fixtures/gpt_tiny.safetensors     the state_dict of tools/nanogpt_model.py's GPT
                                          (nanoGPT's keys, lm_head.weight and
                                          transformer.wte.weight both present, as state_dict()
                                          has them) for vocab 11, block 8, 2 layers, 2 heads,
                                          16 dims, with biases
  tests/fixtures/gpt_tiny_io.safetensors  idx [2, 7] (i32) and PyTorch's logits [2, 7, 11]

The weights are nanoGPT's initialisation scaled up (N(0, 0.3) matrices and embeddings, biases
N(0, 0.1), layer norms 1 + N(0, 0.1)), so that every part of the model moves the logits well
above float rounding. Run: ~/torch-venv/bin/python tools/make_gpt_fixture.py
"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nanogpt_model import GPT, GPTConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    torch.manual_seed(1234)
    cfg = GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=16, dropout=0.0,
                    bias=True)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('ln_1.weight') or name.endswith('ln_2.weight') or \
                    name.endswith('ln_f.weight'):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    idx = torch.randint(0, cfg.vocab_size, (2, 7))
    with torch.no_grad():
        logits, _ = model(idx)
    # save_file refuses tensors that share memory: the tied key gets its own copy.
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    assert 'lm_head.weight' in sd and 'transformer.wte.weight' in sd
    out = os.path.join(ROOT, 'tests', 'fixtures')
    save_file(sd, os.path.join(out, 'gpt_tiny.safetensors'))
    save_file({'idx': idx.to(torch.int32).contiguous(), 'logits': logits.contiguous()},
              os.path.join(out, 'gpt_tiny_io.safetensors'))
    print('wrote', len(sd), 'tensors; logits std %.3f' % logits.std().item())


if __name__ == '__main__':
    main()
