#!/usr/bin/python3
"""The PyTorch side of bench/compare_pytorch.sh --job resnet: jobs/fashion_mnist_resnet.toml's
network, block for block: stem conv 32 3x3 (same, no bias) + BatchNorm + ReLU + maxpool 2;
two residual blocks at 32 channels (conv-BN-ReLU-conv-BN, identity shortcut, ReLU after the
add); a block at 64 channels whose first conv has stride 2 and whose shortcut is a bias-free
1x1 conv with stride 2; a block at 64; global average pooling; dense 10. SGD lr 0.1,
Nesterov momentum 0.9, weight decay 5e-4 (constant rate: the bench times steps, not a
schedule). Augmentation as the job's [augment]: a random crop of the image padded by 2
(zeros) and a horizontal flip with probability 1/2, drawn per sample on the batch as tensor
operations (--no-augment: none). Same batch order rule as nntrain (bench/torchddp.py).

Prints one JSON line (bench/torchddp.py). Usage:
  pytorch_resnet.py --ranks N --batch-per-rank B --threads T [--epochs E] [--no-augment]
"""
import argparse, time

import torch
import torch.nn as nn
import torch.nn.functional as F

import torchddp
from pytorch_cnn import load  # the same normalized training images


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (self.short(x) if self.short is not None else x))


def model():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        Block(32, 32, 1), Block(32, 32, 1), Block(32, 64, 2), Block(64, 64, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def augment(x, g):
    """Random crop of the image padded by 2, then a horizontal flip with p = 1/2, per sample."""
    n = x.shape[0]
    xp = F.pad(x, (2, 2, 2, 2))
    dy = torch.randint(0, 5, (n,), generator=g)
    dx = torch.randint(0, 5, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(28)[None, :])[:, None, :, None]   # [n, 1, 28, 1]
    cols = (dx[:, None] + torch.arange(28)[None, :])[:, None, None, :]   # [n, 1, 1, 28]
    out = xp[torch.arange(n)[:, None, None, None], torch.zeros(1, 1, 1, 1, dtype=torch.long),
             rows, cols]
    flip = torch.rand(n, generator=g) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def worker(rank, args):
    x, y = load()
    net = torchddp.wrap(model(), args)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    lossf = nn.CrossEntropyLoss()
    B = args.batch_per_rank * args.ranks
    n = len(x)
    g = torch.Generator().manual_seed(1)
    ga = torch.Generator().manual_seed(100 + rank)
    seconds, seen, last = 0.0, 0, 0.0
    net.train()
    for epoch in range(args.epochs):
        perm = torch.randperm(n, generator=g)
        torchddp.barrier(args)
        t0 = time.perf_counter()
        for s in range(0, n, B):
            idx = perm[s:s + B]
            lo, hi = torchddp.slice_of(len(idx), rank, args.ranks)
            xi, yi = x[idx[lo:hi]], y[idx[lo:hi]]
            if args.augment:
                xi = augment(xi, ga)
            opt.zero_grad(set_to_none=True)
            loss = lossf(net(xi), yi)
            loss.backward()
            opt.step()
            seen += len(idx)
            last = float(loss)
        torchddp.barrier(args)
        seconds += time.perf_counter() - t0
    return seen, seconds, last, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--batch-per-rank", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--port", type=int, default=29514)
    ap.add_argument("--no-augment", dest="augment", action="store_false")
    torchddp.run(ap.parse_args(), worker)


if __name__ == "__main__":
    main()
