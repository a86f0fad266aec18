#!/usr/bin/python3
"""The PyTorch side of the language-model benchmark (jobs/fortunes_charlstm.toml):
the same network on the same token stream (`nntrain prepare text`, read with h5py):
nn.Embedding(257, 64) -> nn.LSTM(64, 256, batch_first) with its state carried from
window to window (detached) -> nn.Linear(256, 257) at every timestep; Adam lr 2e-3,
gradient norm clipped to 1. The stream is cut into S = streams-per-rank x N streams as
nntrain does (stream s starts at token s * L/S; window k is tokens [k*bptt, (k+1)*bptt)
of every stream, targets one token on); rank r keeps streams [r*S/N, (r+1)*S/N)
(DistributedDataParallel over gloo when N > 1).

Prints one JSON line: {"impl": "pytorch", "ranks": N, "samples_per_s": TOKENS per
second, "epoch_s": ..., "peak_rss_mb": [per rank], "loss": ...}.
Usage: pytorch_charlm.py --data DIR [--ranks N] [--streams-per-rank S] [--bptt T]
       [--threads T] [--epochs E]
"""
import argparse, glob, os, sys, time

import h5py
import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchddp  # noqa: E402


def load_stream(pattern):
    parts = []
    for p in sorted(glob.glob(pattern)):
        with h5py.File(p, "r") as f:
            x, n = f["features"][()], f["lengths"][()]
            parts.extend(row[:k] for row, k in zip(x, n))
    return torch.from_numpy(np.concatenate(parts).astype(np.int64))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(257, 64)
        self.lstm = nn.LSTM(64, 256, batch_first=True)
        self.out = nn.Linear(256, 257)

    def forward(self, x, state):
        y, state = self.lstm(self.emb(x), state)
        return self.out(y), state


def worker(rank, args):
    tok = load_stream(os.path.join(args.data, "train-*.h5"))
    S = args.streams_per_rank * args.ranks
    each = len(tok) // S
    lo, hi = torchddp.slice_of(S, rank, args.ranks)
    mine = tok[:each * S].view(S, each)[lo:hi]
    windows = (each - 1) // args.bptt
    net = torchddp.wrap(Net(), args)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    lossf = nn.CrossEntropyLoss()
    t_total, tokens, last = 0.0, 0, 0.0
    for epoch in range(args.epochs):
        state = None
        torchddp.barrier(args)
        t0 = time.perf_counter()
        for k in range(windows):
            x = mine[:, k * args.bptt:(k + 1) * args.bptt]
            y = mine[:, k * args.bptt + 1:(k + 1) * args.bptt + 1]
            if state is not None:
                state = tuple(s.detach() for s in state)
            opt.zero_grad(set_to_none=True)
            out, state = net(x, state)
            loss = lossf(out.reshape(-1, 257), y.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            tokens += S * args.bptt
            last = float(loss)
        torchddp.barrier(args)
        t_total += time.perf_counter() - t0
    return tokens, t_total, last, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--streams-per-rank", type=int, default=16)
    ap.add_argument("--bptt", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--port", type=int, default=29513)
    args = ap.parse_args()
    torchddp.run(args, worker)


if __name__ == "__main__":
    main()
