#!/usr/bin/python3
"""rnn_torch_parity.py: nntrain's rnn/lstm/gru against torch.nn.RNN/LSTM/GRU.

Usage: rnn_torch_parity.py CASE.txt...  (written by tests/test_core_rnn_torch.c)

Each case file holds a layer's configuration, the lengths, and tensors as
"tensor NAME COUNT v1 v2 ...": x [n, T, C]; p.<name>: every parameter under
its PyTorch name; g: the upstream gradient of the scalar loss sum(g * y);
nntrain's results y, dx, grad.<name>, and (carry = true) carry: per sample
h_n [L, H] then, for lstm, c_n [L, H].

The same weights are loaded into the torch module with load_state_dict (so
the names and shapes must be PyTorch's), the inputs are packed with
pack_padded_sequence (lengths, enforce_sorted=False), and the module runs
in float64 from the float32 values, so the differences are nntrain's float
rounding. y is pad_packed_sequence's output (return_sequences) or the top
layer's h_n, [forward, reverse] concatenated. Every compared tensor must
agree to TOL relative to its largest magnitude. Exits 0, 1 on a mismatch,
77 when torch cannot be imported.
"""
import sys

try:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
except Exception as e:  # noqa: BLE001 - any failure to import means: skip
    print("SKIPPED: torch is not importable: %s" % e)
    sys.exit(77)

TOL = 1e-5


def read_case(path):
    cfg, lengths, tensors = {}, None, {}
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "config":
                for kv in w[1:]:
                    k, v = kv.split("=")
                    cfg[k] = v
            elif w[0] == "lengths":
                lengths = [int(v) for v in w[1:]]
            elif w[0] == "tensor":
                count = int(w[2])
                vals = [float(v) for v in w[3:]]
                assert len(vals) == count, (path, w[1], len(vals), count)
                tensors[w[1]] = torch.tensor(vals, dtype=torch.float64)
    return cfg, lengths, tensors


def run_case(path):
    cfg, lengths, t = read_case(path)
    kind = cfg["type"]
    n, T, C, H = (int(cfg[k]) for k in ("n", "T", "C", "hidden"))
    L, D = int(cfg["layers"]), 2 if cfg["bidir"] == "1" else 1
    common = dict(num_layers=L, bias=cfg["bias"] == "1", batch_first=True,
                  bidirectional=D == 2)
    if kind == "lstm":
        mod = torch.nn.LSTM(C, H, **common)
    elif kind == "gru":
        mod = torch.nn.GRU(C, H, **common)
    else:
        mod = torch.nn.RNN(C, H, nonlinearity=cfg["nonlinearity"], **common)
    mod = mod.double()
    sd = mod.state_dict()
    names = [k[2:] for k in t if k.startswith("p.")]
    if sorted(names) != sorted(sd.keys()):
        print("%s: parameter names differ: nntrain %s, torch %s" % (path, names, list(sd)))
        return False
    mod.load_state_dict({k: t["p." + k].reshape(sd[k].shape) for k in names})
    x = t["x"].reshape(n, T, C).clone().requires_grad_(True)
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=True,
                                  enforce_sorted=False)
    out, hn = mod(packed)
    h_n, c_n = hn if kind == "lstm" else (hn, None)
    if cfg["seq"] == "1":
        y, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    else:
        y = torch.cat([h_n[(L - 1) * D + d] for d in range(D)], dim=1)
    g = t["g"].reshape(y.shape)
    (g * y).sum().backward()
    pairs = [("y", y.detach(), t["y"]), ("dx", x.grad, t["dx"])]
    for k, p in mod.named_parameters():
        pairs.append(("grad." + k, p.grad, t["grad." + k]))
    if "carry" in t:
        state = [h_n.permute(1, 0, 2).reshape(n, L * H)]
        if c_n is not None:
            state.append(c_n.permute(1, 0, 2).reshape(n, L * H))
        pairs.append(("carry=h_n" + (",c_n" if c_n is not None else ""),
                      torch.cat(state, dim=1).detach(), t["carry"]))
    ok, worst = True, 0.0
    for name, ref, got in pairs:
        ref = ref.reshape(-1)
        scale = max(ref.abs().max().item(), 1e-30)
        diff = (ref - got).abs().max().item()
        rel = diff / scale
        worst = max(worst, rel)
        if not rel <= TOL:
            print("%s: %s differs: max |diff| %.3g, relative %.3g (tolerance %g)"
                  % (path, name, diff, rel, TOL))
            ok = False
    print("%-60s %s, %d tensors, max relative difference %.2e"
          % (" ".join("%s=%s" % kv for kv in cfg.items() if kv[0] not in "nTC"),
             "ok" if ok else "FAILED", len(pairs), worst))
    return ok


def main():
    torch.set_num_threads(1)
    results = [run_case(p) for p in sys.argv[1:]]
    if not results:
        print("no cases")
        return 1
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
