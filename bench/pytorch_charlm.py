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
import argparse, glob, json, os, resource, sys, time

import h5py
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn


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


def worker(rank, args, q):
    torch.set_num_threads(args.threads)
    if args.ranks > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(args.port))
        dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    torch.manual_seed(1)
    tok = load_stream(os.path.join(args.data, "train-*.h5"))
    S = args.streams_per_rank * args.ranks
    each = len(tok) // S
    lo, hi = S * rank // args.ranks, S * (rank + 1) // args.ranks
    mine = tok[:each * S].view(S, each)[lo:hi]
    windows = (each - 1) // args.bptt
    m = Net()
    net = nn.parallel.DistributedDataParallel(m) if args.ranks > 1 else m
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    lossf = nn.CrossEntropyLoss()
    t_total, tokens, last = 0.0, 0, 0.0
    for epoch in range(args.epochs):
        state = None
        if args.ranks > 1:
            dist.barrier()
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
        if args.ranks > 1:
            dist.barrier()
        t_total += time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    q.put((rank, tokens, t_total, rss, last))
    if args.ranks > 1:
        dist.destroy_process_group()


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
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, args, q)) for r in range(args.ranks)]
    for p in procs:
        p.start()
    res = sorted((q.get() for _ in procs), key=lambda r: r[0])
    for p in procs:
        p.join()
        if p.exitcode != 0:
            sys.exit("pytorch rank failed with exit code %s" % p.exitcode)
    tokens, t = res[0][1], max(r[2] for r in res)
    print(json.dumps({"impl": "pytorch", "ranks": args.ranks, "samples_per_s": tokens / t,
                      "epoch_s": t / args.epochs, "peak_rss_mb": [round(r[3], 1) for r in res],
                      "loss": res[0][4]}))


if __name__ == "__main__":
    main()
