#!/usr/bin/python3
"""The PyTorch side of the VAE comparison (jobs/fashion_mnist_vae.toml): the
same network (784 -> 400 -> 2 x 20 -> sample -> 400 -> 784 logits, ReLU), loss
per image = binary cross-entropy from logits summed over the 784 pixels + KL
(beta = 1), Adam lr 1e-3, global batch 128, one process, pixels in [0, 1].
After every epoch: the test set's mean ELBO, reconstruction and KL per image,
with z = mu as nntrain evaluates (the decoder's mean code, no sampling).

Prints one JSON line per epoch: {"impl": "pytorch", "epoch": E, "loss": train
loss per image, "test_elbo": ..., "test_recon": ..., "test_kl": ...}.
Usage: pytorch_vae.py [--epochs 10] [--threads 1] [--seed 1]
"""
import argparse, gzip, json, os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SRC = "/usr/share/datasets/fashion-mnist"


def load(kind):
    with gzip.open(os.path.join(SRC, kind + "-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    return torch.from_numpy(x.astype(np.float32) / 255.0)


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(784, 400)
        self.stats = nn.Linear(400, 40)
        self.dec = nn.Linear(20, 400)
        self.out = nn.Linear(400, 784)

    def forward(self, x, sample):
        s = self.stats(F.relu(self.enc(x)))
        mu, logvar = s[:, :20], s[:, 20:]
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        return self.out(F.relu(self.dec(z))), mu, logvar


def losses(model, x, sample):
    logits, mu, logvar = model(x, sample)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = 0.5 * torch.sum(mu * mu + logvar.exp() - 1 - logvar)
    return recon, kl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, xte = load("train"), load("t10k")
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, a.epochs + 1):
        model.train()
        perm = torch.randperm(len(xtr))
        tot = 0.0
        for i in range(0, len(xtr), 128):
            x = xtr[perm[i:i + 128]]
            recon, kl = losses(model, x, True)
            loss = (recon + kl) / len(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(recon + kl)
        model.eval()
        with torch.no_grad():
            r, k = 0.0, 0.0
            for i in range(0, len(xte), 1000):
                recon, kl = losses(model, xte[i:i + 1000], False)
                r, k = r + float(recon), k + float(kl)
        n = len(xte)
        print(json.dumps({"impl": "pytorch", "epoch": epoch, "loss": tot / len(xtr),
                          "test_elbo": -(r + k) / n, "test_recon": r / n, "test_kl": k / n}),
              flush=True)


if __name__ == "__main__":
    main()
