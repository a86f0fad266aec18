#!/usr/bin/python3
"""The PyTorch side of bench/compare_pytorch.sh: the classic Fashion-MNIST convnet
(conv 32 3x3, maxpool 2, conv 64 3x3, maxpool 2, conv 64 3x3, flatten, dense 64,
dense 10; ReLU after each conv and the first dense), Adam lr 1e-3, trained for
one epoch on N ranks (DistributedDataParallel over gloo when N > 1) with the
same global batch order rule as nntrain: one permutation per epoch, rank r
takes the r-th contiguous slice of every global batch.

Prints one JSON line: {"impl": "pytorch", "ranks": N, "samples_per_s": ...,
"epoch_s": ..., "peak_rss_mb": [per rank], "loss": ...}.
Usage: pytorch_cnn.py --ranks N --batch-per-rank B --threads T [--epochs E]
"""
import argparse, gzip, json, os, resource, sys, time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

SRC = "/usr/share/datasets/fashion-mnist"


def load():
    with gzip.open(os.path.join(SRC, "train-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(SRC, "train-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    x = x.astype(np.float32) / 255.0
    x = (x - x.mean()) / x.std()
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(64 * 3 * 3, 64), nn.ReLU(), nn.Linear(64, 10))


def worker(rank, args, q):
    torch.set_num_threads(args.threads)
    if args.ranks > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(args.port))
        dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    torch.manual_seed(1)
    x, y = load()
    m = model()
    net = nn.parallel.DistributedDataParallel(m) if args.ranks > 1 else m
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
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
            xi, yi = x[idx[lo:hi]], y[idx[lo:hi]]
            opt.zero_grad(set_to_none=True)
            out = net(xi)
            # DDP averages gradients over ranks: with equal slices this is the mean
            # over the global batch, as nntrain computes it.
            loss = lossf(out, yi)
            loss.backward()
            opt.step()
            seen += b
            last = float(loss)
        if args.ranks > 1:
            dist.barrier()
        t_total += time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    q.put((rank, seen, t_total, rss, last))
    if args.ranks > 1:
        dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--batch-per-rank", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--port", type=int, default=29511)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, args, q)) for r in range(args.ranks)]
    for p in procs:
        p.start()
    res = sorted(q.get() for _ in procs)
    for p in procs:
        p.join()
        if p.exitcode != 0:
            sys.exit("pytorch rank failed with exit code %s" % p.exitcode)
    seen, t = res[0][1], max(r[2] for r in res)
    print(json.dumps({"impl": "pytorch", "ranks": args.ranks, "samples_per_s": seen / t,
                      "epoch_s": t / args.epochs, "peak_rss_mb": [round(r[3], 1) for r in res],
                      "loss": res[0][4]}))


if __name__ == "__main__":
    main()
