"""seq_torch_check.py DIR: PyTorch's view of the cases test_core_seq_torch.c wrote.

DIR/cases.txt has one case a line (kind, id, then its sizes); each case's
tensors are raw float32 files DIR/<id>_<name>.bin written by nntrain (inputs,
parameters, the upstream gradient, and nntrain's outputs and gradients). This
recomputes the outputs and gradients with torch in float64 from the same
inputs and parameters, prints the largest difference of each case, and exits
1 if any exceeds the tolerance (2 without torch: the C test then skips).
"""
import sys
import warnings

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # the C side turns this into a skip
    print("no torch: %s" % e)
    sys.exit(2)

warnings.filterwarnings("ignore", message=".*padding=.same.*")  # torch 1.13 on even kernels
# |nntrain - torch| / max(1, |torch|): nntrain computes in float32, so the
# rounding grows with the length of its sums (conv1d: C*k products a output)
TOL = 1e-5
D = sys.argv[1]


def load(cid, name, shape):
    a = np.fromfile("%s/%s_%s.bin" % (D, cid, name), dtype="<f4")
    assert a.size == int(np.prod(shape)), (cid, name, a.size, shape)
    return torch.tensor(a.reshape(shape), dtype=torch.float64)


def diff(got, want):
    want = want.detach()
    den = torch.clamp(want.abs(), min=1.0)
    d = (got - want).abs() / den
    if not torch.isfinite(d).all():  # NaN would slip through max()
        return float("inf")
    return float(d.max()) if d.numel() else 0.0


def conv1d(cid, n, t, c, f, k, st, dil, pad, bias, to):
    x = load(cid, "x", (n, t, c)).requires_grad_()
    w = load(cid, "w", (f, c, k)).requires_grad_()
    b = load(cid, "b", (f,)).requires_grad_() if bias else None
    dy = load(cid, "dy", (n, to, f))
    ek = dil * (k - 1) + 1
    if pad == "valid":
        pl = pr = 0
    elif pad == "causal":
        pl, pr = ek - 1, 0
    else:  # same: out = ceil(t / stride), the odd element on the right
        out = (t + st - 1) // st
        total = max((out - 1) * st + ek - t, 0)
        pl, pr = total // 2, total - total // 2
    y = F.conv1d(F.pad(x.transpose(1, 2), (pl, pr)), w, b, stride=st, dilation=dil)
    y = y.transpose(1, 2)
    worst = diff(load(cid, "y", (n, to, f)), y)
    if pad == "same" and st == 1:  # PyTorch's own padding='same' agrees
        ys = F.conv1d(x.transpose(1, 2), w, b, padding="same", dilation=dil).transpose(1, 2)
        worst = max(worst, diff(load(cid, "y", (n, to, f)), ys))
    y.backward(dy)
    worst = max(worst, diff(load(cid, "dw", (f, c, k)), w.grad),
                diff(load(cid, "dx", (n, t, c)), x.grad))
    if bias:
        worst = max(worst, diff(load(cid, "db", (f,)), b.grad))
    return worst


def embedding(cid, n, t, v, d, pad):
    ids = load(cid, "x", (n, t)).long()
    w = load(cid, "w", (v, d)).requires_grad_()
    dy = load(cid, "dy", (n, t, d))
    y = F.embedding(ids, w, padding_idx=None if pad < 0 else pad)
    worst = diff(load(cid, "y", (n, t, d)), y)
    y.backward(dy)
    if pad >= 0:
        assert float(w.grad[pad].abs().max()) == 0.0  # torch too: no gradient
    return max(worst, diff(load(cid, "dw", (v, d)), w.grad))


def dense_ts(cid, n, t, c, u, bias):
    x = load(cid, "x", (n, t, c)).requires_grad_()
    w = load(cid, "w", (u, c)).requires_grad_()
    b = load(cid, "b", (u,)).requires_grad_() if bias else None
    y = F.linear(x, w, b)
    worst = diff(load(cid, "y", (n, t, u)), y)
    y.backward(load(cid, "dy", (n, t, u)))
    worst = max(worst, diff(load(cid, "dw", (u, c)), w.grad),
                diff(load(cid, "dx", (n, t, c)), x.grad))
    if bias:
        worst = max(worst, diff(load(cid, "db", (u,)), b.grad))
    return worst


def seq_ce(cid, n, t, k):
    lg = load(cid, "logits", (n, t, k)).requires_grad_()
    tg = load(cid, "targets", (n, t)).long()
    lens = load(cid, "lengths", (n,)).long()
    mask = torch.arange(t)[None, :] < lens[:, None]
    tg = torch.where(mask, tg, torch.full_like(tg, -100))  # padded steps: ignored
    valid = int(mask.sum())
    loss = F.cross_entropy(lg.reshape(-1, k), tg.reshape(-1), reduction="sum", ignore_index=-100)
    worst = diff(load(cid, "loss", (1,)), loss.reshape(1))
    (loss / valid).backward()  # the mean per valid token: scale = 1 / valid
    return max(worst, diff(load(cid, "dlogits", (n, t, k)), lg.grad))


KINDS = {"conv1d": conv1d, "embedding": embedding, "dense_ts": dense_ts, "seq_ce": seq_ce}

torch.set_grad_enabled(True)
bad = 0
overall = 0.0
with open("%s/cases.txt" % D) as fh:
    for line in fh:
        parts = line.split()
        kind, cid = parts[0], parts[1]
        args = [p if not p.lstrip("-").isdigit() else int(p) for p in parts[2:]]
        worst = KINDS[kind](cid, *args)
        overall = max(overall, worst)
        tol = TOL + (2e-8 * args[2] * args[4] if kind == "conv1d" else 0.0)
        ok = worst <= tol
        bad += not ok
        print("%-9s %-4s %-40s max rel diff %.2e%s" % (kind, cid, " ".join(parts[2:]), worst,
                                                      "" if ok else "  FAIL"))
print("worst %.2e over all cases (tolerance %.0e, conv1d + 2e-8 C*k)" % (overall, TOL))
sys.exit(1 if bad else 0)
