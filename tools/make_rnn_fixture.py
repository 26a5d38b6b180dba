#!/usr/bin/env python3
"""Make the fixtures that check clgrad's recurrent layers (src/nn/rnn.c) against PyTorch.

  tests/fixtures/rnn_<case>.safetensors   the state_dict of a seeded torch.nn.LSTM, GRU or RNN
                                          (PyTorch's names and layouts; some cases inside a
                                          parent module, so the keys carry a prefix), written by
                                          safetensors.torch.save_file; tests/test-rnn.c loads it
                                          with clg_checkpoint_load.
  tests/fixtures/rnn_io.safetensors       per case "<case>.x", the initial states "<case>.h0"
                                          and "<case>.c0" where the case has them, "<case>.lengths"
                                          (i32) for packed sequences, and what PyTorch computes:
                                          "<case>.out", "<case>.h_n", "<case>.c_n" (LSTM).
                                          "__metadata__" holds each case's settings as JSON.

Outputs are computed in float64 from the float32 weights and inputs (so the reference is the
exact value of the float32 data, and clgrad's float32 result is compared at float32
tolerance). Packed cases run pack_padded_sequence(enforce_sorted=False) and
pad_packed_sequence(total_length=T): padded outputs are 0, h_n is each sequence's state after
its last valid step.

Run (needs PyTorch, never needed by the library or CI):
    ~/torch-venv/bin/python tools/make_rnn_fixture.py            # rewrite the fixtures
    ~/torch-venv/bin/python tools/make_rnn_fixture.py --check    # compare with the committed ones
    build/tests/test-rnn --write-checkpoint /tmp/clgrad_rnn.safetensors
    ~/torch-venv/bin/python tools/make_rnn_fixture.py --clgrad-checkpoint /tmp/clgrad_rnn.safetensors
The last loads clgrad's layers (every case's, saved under "<case>.") into the torch modules
with load_state_dict(strict=True), checks every tensor against PyTorch's initialisation bound
and runs each module once.
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "tests", "fixtures"))
IO_FILE = "rnn_io.safetensors"

I, H, T, B = 5, 7, 6, 3

# name: module kind, the key prefix in the state dict ("" for a module saved on its own),
# constructor settings, whether to pass h0 (and c0 for LSTM), lengths or None.
CASES = {
    "lstm_bi2": dict(kind="LSTM", prefix="", layers=2, bidirectional=True, batch_first=False,
                     bias=True, nonlinearity=None, initial=True, lengths=None),
    "gru_bf2": dict(kind="GRU", prefix="gru", layers=2, bidirectional=False, batch_first=True,
                    bias=True, nonlinearity=None, initial=False, lengths=None),
    "gru_bf1": dict(kind="GRU", prefix="enc.gru", layers=1, bidirectional=False,
                    batch_first=True, bias=True, nonlinearity=None, initial=True, lengths=None),
    "rnn_tanh": dict(kind="RNN", prefix="rnn", layers=2, bidirectional=False, batch_first=False,
                     bias=False, nonlinearity="tanh", initial=True, lengths=None),
    "rnn_relu": dict(kind="RNN", prefix="", layers=1, bidirectional=True, batch_first=False,
                     bias=True, nonlinearity="relu", initial=False, lengths=None),
    "lstm_packed": dict(kind="LSTM", prefix="lstm", layers=2, bidirectional=True,
                        batch_first=False, bias=True, nonlinearity=None, initial=True,
                        lengths=[4, 6, 1]),
    "gru_packed": dict(kind="GRU", prefix="", layers=1, bidirectional=True, batch_first=True,
                       bias=True, nonlinearity=None, initial=False, lengths=[3, 6, 5]),
}


def make_module(c):
    kw = dict(input_size=I, hidden_size=H, num_layers=c["layers"], bias=c["bias"],
              batch_first=c["batch_first"], bidirectional=c["bidirectional"])
    if c["kind"] == "RNN":
        return torch.nn.RNN(nonlinearity=c["nonlinearity"], **kw)
    return getattr(torch.nn, c["kind"])(**kw)


def run_case(index, name, c):
    torch.manual_seed(1000 + index)
    m = make_module(c)  # float32 default initialisation
    state = {(c["prefix"] + "." if c["prefix"] else "") + k: v.detach().clone().contiguous()
             for k, v in m.state_dict().items()}
    dirs = 2 if c["bidirectional"] else 1
    xs = (B, T, I) if c["batch_first"] else (T, B, I)
    x = torch.randn(*xs)
    io = {name + ".x": x}
    hx = None
    if c["initial"]:
        h0 = torch.randn(c["layers"] * dirs, B, H) * 0.5
        io[name + ".h0"] = h0
        hx = h0.double()
        if c["kind"] == "LSTM":
            c0 = torch.randn(c["layers"] * dirs, B, H) * 0.5
            io[name + ".c0"] = c0
            hx = (h0.double(), c0.double())
    m = m.double()
    with torch.no_grad():
        if c["lengths"] is None:
            out, hn = m(x.double(), hx)
        else:
            lengths = torch.tensor(c["lengths"], dtype=torch.int64)
            io[name + ".lengths"] = lengths.to(torch.int32)
            packed = pack_padded_sequence(x.double(), lengths, batch_first=c["batch_first"],
                                          enforce_sorted=False)
            out, hn = m(packed, hx)
            out, _ = pad_packed_sequence(out, batch_first=c["batch_first"], total_length=T)
    if c["kind"] == "LSTM":
        hn, cn = hn
        io[name + ".c_n"] = cn.float().contiguous()
    io[name + ".h_n"] = hn.float().contiguous()
    io[name + ".out"] = out.float().contiguous()
    return state, io


def build():
    states, io, meta = {}, {}, {}
    for i, (name, c) in enumerate(CASES.items()):
        states[name], case_io = run_case(i, name, c)
        io.update(case_io)
        meta[name] = json.dumps(dict(c, input_size=I, hidden_size=H, steps=T, batch=B),
                                sort_keys=True)
    return states, io, meta


def same(a, b):
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k])
        for k in a)


def load_clgrad(path):
    saved = load_file(path)
    bad = 0
    for name, c in CASES.items():
        m = make_module(c)
        sd = {k[len(name) + 1:]: v for k, v in saved.items() if k.startswith(name + ".")}
        try:
            m.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            print("%s: %s" % (name, e))
            bad += 1
            continue
        bound = 1.0 / H ** 0.5
        for k, v in m.state_dict().items():
            top = v.abs().max().item()
            if not 0.5 * bound < top <= bound * (1 + 1e-6):
                print("%s.%s: largest |value| %g is not U(+-1/sqrt(H) = %g)'s" % (name, k, top,
                                                                                 bound))
                bad += 1
        with torch.no_grad():
            dirs = 2 if c["bidirectional"] else 1
            out, _ = m(torch.randn(B, T, I) if c["batch_first"] else torch.randn(T, B, I))
            if out.shape[-1] != dirs * H:
                print("%s: output %s" % (name, tuple(out.shape)))
                bad += 1
        print("%s: %d tensors loaded" % (name, len(sd)))
    print("clgrad checkpoint %s" % ("does not load" if bad else "loads into torch"))
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="compare with the committed fixtures instead of writing them")
    ap.add_argument("--clgrad-checkpoint", metavar="PATH",
                    help="load a checkpoint from test-rnn --write-checkpoint into torch")
    args = ap.parse_args()
    if args.clgrad_checkpoint:
        return load_clgrad(args.clgrad_checkpoint)
    states, io, meta = build()
    if not args.check:
        os.makedirs(FIXTURES, exist_ok=True)
        for name, sd in states.items():
            save_file(sd, os.path.join(FIXTURES, "rnn_%s.safetensors" % name))
        save_file(io, os.path.join(FIXTURES, IO_FILE), metadata=meta)
        print("wrote %d cases to %s" % (len(states), FIXTURES))
        return 0
    bad = []
    for name, sd in states.items():
        if not same(sd, load_file(os.path.join(FIXTURES, "rnn_%s.safetensors" % name))):
            bad.append("rnn_%s.safetensors" % name)
    if not same(io, load_file(os.path.join(FIXTURES, IO_FILE))):
        bad.append(IO_FILE)
    for b in bad:
        print("differs: " + b)
    print("fixtures %s" % ("differ" if bad else "match"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
