#!/usr/bin/python3
"""The PyTorch side of the word-language benchmark (jobs/wordlang_gru.toml):
the same network on the same shards (`nntrain prepare lines`, read with h5py):
nn.Embedding(257, E, padding_idx=0) -> nn.GRU(E, H, batch_first) over packed
sequences (pack_padded_sequence: the last valid state of each word) ->
nn.Linear(H, classes); Adam; global batch B split over N ranks as nntrain
does (one permutation per epoch, rank r takes the r-th contiguous slice of
every global batch; DistributedDataParallel over gloo when N > 1).

Prints one JSON line: {"impl": "pytorch", "ranks": N, "samples_per_s": ...,
"epoch_s": ..., "peak_rss_mb": [per rank], "loss": ..., "test_acc": ...}
(test_acc: on DIR/test-*.h5 after the last epoch, rank 0; with --eval).
Usage: pytorch_wordlang.py --data DIR [--ranks N] [--batch-per-rank B]
       [--threads T] [--epochs E] [--embed E] [--hidden H] [--lr LR] [--eval]
"""
import argparse, glob, os, sys, time

import h5py
import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchddp  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence


def load(pattern):
    xs, ls, ys = [], [], []
    for p in sorted(glob.glob(pattern)):
        with h5py.File(p, "r") as f:
            xs.append(f["features"][()])
            ls.append(f["lengths"][()])
            ys.append(f["labels"][()])
    return (torch.from_numpy(np.concatenate(xs).astype(np.int64)),
            torch.from_numpy(np.concatenate(ls).astype(np.int64)),
            torch.from_numpy(np.concatenate(ys).astype(np.int64)))


class Net(nn.Module):
    def __init__(self, vocab, embed, hidden, classes):
        super().__init__()
        self.emb = nn.Embedding(vocab, embed, padding_idx=0)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(self.emb(x), lengths, batch_first=True,
                                      enforce_sorted=False)
        _, h = self.gru(packed)
        return self.out(h[-1])


def worker(rank, args):
    x, ln, y = load(os.path.join(args.data, "train-*.h5"))
    classes = int(y.max()) + 1
    m = Net(257, args.embed, args.hidden, classes)
    net = torchddp.wrap(m, args)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    lossf = nn.CrossEntropyLoss()
    B = args.batch_per_rank * args.ranks
    n = len(x)
    g = torch.Generator().manual_seed(1)
    t_total, seen, last = 0.0, 0, 0.0
    for epoch in range(args.epochs):
        perm = torch.randperm(n, generator=g)
        torchddp.barrier(args)
        t0 = time.perf_counter()
        for s in range(0, n, B):
            idx = perm[s:s + B]
            lo, hi = torchddp.slice_of(len(idx), rank, args.ranks)
            sel = idx[lo:hi]
            opt.zero_grad(set_to_none=True)
            loss = lossf(net(x[sel], ln[sel]), y[sel])
            loss.backward()
            opt.step()
            seen += len(idx)
            last = float(loss)
        torchddp.barrier(args)
        t_total += time.perf_counter() - t0
    acc = None
    if args.eval and rank == 0:
        xt, lt, yt = load(os.path.join(args.data, "test-*.h5"))
        with torch.no_grad():
            pred = torch.cat([m(xt[i:i + 1024], lt[i:i + 1024]).argmax(1)
                              for i in range(0, len(xt), 1024)])
        acc = float((pred == yt).float().mean())
    return seen, t_total, last, acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--batch-per-rank", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--embed", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--eval", action="store_true")
    ap.add_argument("--port", type=int, default=29512)
    args = ap.parse_args()
    torchddp.run(args, worker, "test_acc")


if __name__ == "__main__":
    main()
