"""What the PyTorch sides of bench/compare_pytorch.sh share: N worker processes
(spawned), the gloo process group when N > 1, nntrain's slice rule, and the one
JSON line they print. Each script defines worker(rank, args) -> (seen, seconds,
last_loss, extra) and calls run(args, worker, impl_fields)."""
import json, os, resource, sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def slice_of(b, rank, ranks):
    """Rank r's contiguous slice [lo, hi) of a global batch of b, as nntrain cuts it."""
    return b * rank // ranks, b * (rank + 1) // ranks


def _entry(rank, args, worker, q):
    torch.set_num_threads(args.threads)
    if args.ranks > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(args.port))
        dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    torch.manual_seed(1)
    seen, seconds, last, extra = worker(rank, args)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    q.put((rank, seen, seconds, rss, last, extra))
    if args.ranks > 1:
        dist.destroy_process_group()


def barrier(args):
    if args.ranks > 1:
        dist.barrier()


def wrap(model, args):
    """The model as every rank trains it: DDP over gloo when N > 1."""
    return torch.nn.parallel.DistributedDataParallel(model) if args.ranks > 1 else model


def run(args, worker, extra_key=None):
    """Spawn args.ranks workers; print {"impl": "pytorch", "ranks", "samples_per_s",
    "epoch_s", "peak_rss_mb", "loss"[, extra_key]} from rank 0's figures."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_entry, args=(r, args, worker, q)) for r in range(args.ranks)]
    for p in procs:
        p.start()
    res = sorted((q.get() for _ in procs), key=lambda r: r[0])
    for p in procs:
        p.join()
        if p.exitcode != 0:
            sys.exit("pytorch rank failed with exit code %s" % p.exitcode)
    seen, t = res[0][1], max(r[2] for r in res)
    out = {"impl": "pytorch", "ranks": args.ranks, "samples_per_s": seen / t,
           "epoch_s": t / args.epochs, "peak_rss_mb": [round(r[3], 1) for r in res],
           "loss": res[0][4]}
    if extra_key:
        out[extra_key] = res[0][5]
    print(json.dumps(out))
