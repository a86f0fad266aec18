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
import argparse, glob, json, os, resource, sys, time

import h5py
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
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


def worker(rank, args, q):
    torch.set_num_threads(args.threads)
    if args.ranks > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(args.port))
        dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    torch.manual_seed(1)
    x, ln, y = load(os.path.join(args.data, "train-*.h5"))
    classes = int(y.max()) + 1
    m = Net(257, args.embed, args.hidden, classes)
    net = nn.parallel.DistributedDataParallel(m) if args.ranks > 1 else m
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    lossf = nn.CrossEntropyLoss()
    B = args.batch_per_rank * args.ranks
    n = len(x)
    g = torch.Generator().manual_seed(1)
    t_total, seen, last = 0.0, 0, 0.0
    for epoch in range(args.epochs):
        perm = torch.randperm(n, generator=g)
        if args.ranks > 1:
            dist.barrier()
        t0 = time.perf_counter()
        for s in range(0, n, B):
            idx = perm[s:s + B]
            b = len(idx)
            lo, hi = b * rank // args.ranks, b * (rank + 1) // args.ranks
            sel = idx[lo:hi]
            opt.zero_grad(set_to_none=True)
            loss = lossf(net(x[sel], ln[sel]), y[sel])
            loss.backward()
            opt.step()
            seen += b
            last = float(loss)
        if args.ranks > 1:
            dist.barrier()
        t_total += time.perf_counter() - t0
    acc = None
    if args.eval and rank == 0:
        xt, lt, yt = load(os.path.join(args.data, "test-*.h5"))
        with torch.no_grad():
            pred = torch.cat([m(xt[i:i + 1024], lt[i:i + 1024]).argmax(1)
                              for i in range(0, len(xt), 1024)])
        acc = float((pred == yt).float().mean())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    q.put((rank, seen, t_total, rss, last, acc))
    if args.ranks > 1:
        dist.destroy_process_group()


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
    seen, t = res[0][1], max(r[2] for r in res)
    print(json.dumps({"impl": "pytorch", "ranks": args.ranks, "samples_per_s": seen / t,
                      "epoch_s": t / args.epochs, "peak_rss_mb": [round(r[3], 1) for r in res],
                      "loss": res[0][4], "test_acc": res[0][5]}))


if __name__ == "__main__":
    main()
