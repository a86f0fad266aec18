#!/usr/bin/python3
"""alphabeta.py: the alpha-beta cost model of a ring all-reduce (docs/scaling.md).

A ring all-reduce of S bytes over N ranks takes 2(N-1) steps, each sending S/N
bytes to the next rank:

    t(S, N) = 2(N-1) * alpha + 2(N-1)/N * S * beta

alpha is the per-step latency (message start-up, scheduling), beta the seconds
per byte of the slowest link a step crosses (1 / its bandwidth). When the ranks
are placed host by host, each host's link carries one ring stream per
direction, so beta is the link's (not the shared memory's).

  fit FILE.json... --rate RATE [--min-bytes B] [--which ring|mpi|hier|hier_rs]
      least-squares fit of alpha and beta to `nntrain bench allreduce --json`
      lines (relative error weighted, sizes >= B, default 1M), then a table of
      measured vs predicted and the link use 8 / (beta * rate). The
      hierarchical all-reduces cross the host links as a ring over the H
      hosts (hier: the leaders' ring; hier_rs: L rings of S/L bytes at once,
      the same bytes per link), so they are fitted with N = H (the inside of
      a host, over shared memory, goes into alpha).
  predict --alpha A --use U --rates 10gbit,25gbit --ranks 2,4,...
          --job NAME:PARAMS:BATCH:SECONDS_PER_SAMPLE ...
      per job, rate and rank count: the all-reduce of the job's float32
      gradients per step (beta = 8 / (U * rate)), the step's compute at N ranks
      (batch / N samples per rank, at the one-rank speed), and the efficiency
      compute / (compute + all-reduce), assuming no overlap (a lower bound:
      the gradient sync overlaps part of backward)
  scaling ROWS.json --alpha A --beta B --params P --batch G [--hier-alpha A2 --hier-beta B2]
      beside each row of `bench/scaling.sh --json`, the model's samples/s:
      a step at N ranks is G/N samples at the first row's per-sample time
      (compute, data and control of one rank) plus the all-reduce of 4P bytes,
      with the ring's real block sizes for its stripes (--chunk, else the
      row's "allreduce_chunk_bytes", else the default chunk);
      rows of a hierarchical run (bench/scaling.sh records the start
      record's "allreduce") use the ring over the hosts with A2, B2
"""
import argparse
import json
import math
import re
import sys


def rate_bps(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)", s.lower())
    if not m:
        sys.exit("alphabeta.py: rate '%s': expected e.g. 100mbit, 10gbit" % s)
    return float(m.group(1)) * {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[m.group(2)]


def size_str(b):
    return "%d MiB" % (b >> 20) if b >= 1 << 20 else "%d KiB" % (b >> 10)


def model(alpha, beta, s, n):
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * s * beta


def ring_n(r, key):
    """The ring length the model uses: every rank, or the hosts for the hierarchical ones."""
    return r.get("hosts", r["ranks"]) if key in ("hier_us", "hier_rs_us") else r["ranks"]


def fit(rows, key):
    """Weighted least squares of t = a*x1 + b*x2 minimizing sum ((pred - t) / t)^2."""
    sxx = sxy = syy = sx1t = sx2t = 0.0
    for r in rows:
        n, s, t = ring_n(r, key), r["bytes"], r[key] * 1e-6
        x1, x2 = 2 * (n - 1) / t, 2 * (n - 1) / n * s / t
        sxx += x1 * x1
        sxy += x1 * x2
        syy += x2 * x2
        sx1t += x1
        sx2t += x2
    det = sxx * syy - sxy * sxy
    return (sx1t * syy - sx2t * sxy) / det, (sxx * sx2t - sxy * sx1t) / det


def cmd_fit(a):
    rows = []
    for f in a.files:
        rows += [json.loads(l) for l in open(f) if l.strip()]
    key = a.which + "_us"
    used = [r for r in rows if r["bytes"] >= a.min_bytes]
    if len(used) < 2:
        sys.exit("alphabeta.py: fewer than 2 sizes >= %d bytes to fit" % a.min_bytes)
    alpha, beta = fit(used, key)
    bps = rate_bps(a.rate)
    print("%s, %s links: alpha = %.3g ms, beta = %.4g ns/B (%.1f Mbit/s = %.1f%% of the link rate); "
          "fitted on sizes >= %s" % (a.which, a.rate, alpha * 1e3, beta * 1e9, 8 / beta / 1e6,
                                     100 * 8 / beta / bps, size_str(a.min_bytes)))
    print()
    print("| bytes | measured ms | model ms | error | busbw Mbit/s | of link |")
    print("|------:|------------:|---------:|------:|-------------:|--------:|")
    for r in sorted(rows, key=lambda r: r["bytes"]):
        n, s, t = ring_n(r, key), r["bytes"], r[key] * 1e-6
        p = model(alpha, beta, s, n)
        bus = 2 * (n - 1) / n * s * 8 / t / 1e6
        print("| %s | %.1f | %.1f | %+.1f%%%s | %.1f | %.0f%% |" % (
            size_str(s), t * 1e3, p * 1e3, 100 * (p - t) / t, "" if s >= a.min_bytes else " (not fitted)",
            bus, 100 * bus * 1e6 / bps))


def cmd_predict(a):
    rates = a.rates.split(",")
    ranks = [int(x) for x in a.ranks.split(",")]
    print("| job | params | link | " + " | ".join("N=%d" % n for n in ranks) + " |")
    print("|---|---:|---|" + "---:|" * len(ranks))
    for spec in a.job:
        name, params, batch, sps = spec.split(":")
        params, batch, sps = int(params), int(batch), float(sps)
        s = 4 * params
        for rate in rates:
            beta = 8 / (a.use * rate_bps(rate))
            cells = []
            for n in ranks:
                comp = batch / n * sps
                ar = ring_time(a.alpha, beta, s, n, a.chunk)
                cells.append("%.1f ms, %.0f%%" % (ar * 1e3, 100 * comp / (comp + ar)))
            print("| %s | %.2fM | %s | %s |" % (name, params / 1e6, rate, " | ".join(cells)))


BUCKET = 4 << 20  # the gradient sync's bucket (worker/allreduce.c)


def default_chunk(nbytes, n):
    """nn_ring_default_chunk: the buffer's share per member in whole 64-byte
    lines, at most 256 KiB."""
    g = -(-(nbytes // 4) // max(n, 1))
    g = (g + 15) // 16 * 16
    return 4 * max(16, min(g, 1 << 16))


def ring_step_bytes(nbytes, n, chunk):
    """The largest block of the ring (docs/allreduce.md): stripe j of `chunk`
    bytes belongs to block j mod n; each of the 2(n-1) steps moves one block."""
    blocks = [0] * n
    for j in range(-(-nbytes // chunk)):
        blocks[j % n] += min(chunk, nbytes - j * chunk)
    return max(blocks)


def ring_time(alpha, beta, nbytes, n, chunk=0):
    """model() with the ring's real block sizes, bucket by bucket as the
    gradient sync does it: equal to it when the stripes spread evenly (the
    default chunk, 0 here), slower for a buffer of fewer than N stripes (an
    explicit chunk too large for it)."""
    g = chunk or default_chunk(min(nbytes, BUCKET), n)
    t, left = 0.0, nbytes
    while left > 0:
        b = min(left, BUCKET)
        t += 2 * (n - 1) * (alpha + beta * ring_step_bytes(b, n, g))
        left -= b
    return t


def hier_time(alpha, beta, nbytes, hosts, chunk=0):
    """The hierarchical all-reduce: the host phases (shared memory, in alpha)
    and the ring over the hosts' leaders, whose every hop crosses a link."""
    return ring_time(alpha, beta, nbytes, hosts, chunk)


def cmd_scaling(a):
    rows = [json.loads(l) for l in open(a.rows) if l.strip()]
    r0 = rows[0]
    per_sample = r0["ranks"] / r0["samples_per_s"]   # seconds of one rank per sample
    print("| ranks | hosts | measured samples/s | model samples/s | error | measured eff | model eff | model all-reduce ms/step |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        n, h = r["ranks"], r["hosts"]
        if n == 1:
            ar = 0.0
        elif r.get("allreduce") == "hierarchical" and a.hier_alpha:
            ar = hier_time(a.hier_alpha, a.hier_beta or a.beta, 4 * a.params, h,
                           a.chunk or r.get("allreduce_chunk_bytes", 0))
        else:
            ar = ring_time(a.alpha, a.beta, 4 * a.params, n, a.chunk or r.get("allreduce_chunk_bytes", 0))
        step = a.batch / n * per_sample + ar
        pred = a.batch / step
        print("| %d | %d | %.0f | %.0f | %+.0f%% | %.2f | %.2f | %.1f |" % (
            n, r["hosts"], r["samples_per_s"], pred, 100 * (pred - r["samples_per_s"]) / r["samples_per_s"],
            r["samples_per_s"] / (n / per_sample), pred / (n / per_sample), ar * 1e3))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("files", nargs="+")
    f.add_argument("--rate", required=True)
    f.add_argument("--min-bytes", type=int, default=1 << 20)
    f.add_argument("--which", choices=("ring", "mpi", "hier", "hier_rs"), default="ring")
    q = sub.add_parser("predict")
    q.add_argument("--alpha", type=float, required=True, help="seconds")
    q.add_argument("--use", type=float, default=0.93, help="fraction of the link rate a stream gets")
    q.add_argument("--rates", default="10gbit,25gbit")
    q.add_argument("--ranks", default="2,4,8,16,32,64")
    q.add_argument("--job", action="append", required=True)
    q.add_argument("--chunk", type=int, default=0, help="the ring's stripe in bytes (default: the default chunk)")
    s = sub.add_parser("scaling")
    s.add_argument("rows")
    s.add_argument("--alpha", type=float, required=True, help="seconds")
    s.add_argument("--beta", type=float, required=True, help="seconds per byte")
    s.add_argument("--params", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--chunk", type=int, default=0,
                   help="the ring's stripe in bytes (default: the row's allreduce_chunk_bytes, else the default chunk)")
    s.add_argument("--hier-alpha", type=float, default=0.0,
                   help="seconds: rows whose \"allreduce\" is \"hierarchical\" use the host ring's model")
    s.add_argument("--hier-beta", type=float, default=0.0, help="seconds per byte (default --beta)")
    a = p.parse_args()
    {"fit": cmd_fit, "predict": cmd_predict, "scaling": cmd_scaling}[a.cmd](a)


if __name__ == "__main__":
    main()
