"""Out-of-core EM: time per iteration against n, peak memory, and the disk's read rate.

Writes ``n x d`` float32 rows to a ``.npy`` file (generated chunk by chunk, never whole in
memory), then, in a fresh subprocess per size (so that ``ru_maxrss`` is that fit's peak), fits
``GaussianMixture`` on the file opened as a ``numpy.memmap`` (read chunk by chunk with plain
file reads, see ``bayesgmm._sources``) for a fixed number of iterations (``tol=0``) and
reports:

- ``s/it``: seconds per EM iteration: a fit of ``1 + iters`` iterations minus a fit of one
  (both after a first fit that compiled), over ``iters``; the one-off passes (the
  initialisation's subset, the data mean) cancel;
- ``rows/s``: rows per second through EM;
- ``read GB/s``: the file read cold-ish (``posix_fadvise(DONTNEED)`` first, then one pass of
  the same chunked reads EM makes), the limit an iteration cannot beat when the data is not in
  the page cache; and warm (a second pass);
- ``peak RSS MB``: the fit process's ``ru_maxrss``, against the file's size.

Usage::

    python scripts/bench_scale.py --sizes 1e6,1e7 --dir /tmp/bench_scale
    python scripts/bench_scale.py --sizes 1e6,1e7,1e8 --iters 3   # 1e8 x 10 float32: 4 GB
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

FIT = r"""
import json, resource, sys, time
import numpy as np
from bayesgmm import GaussianMixture
path, k, ct, iters = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
X = np.load(path, mmap_mode="r")
import warnings; warnings.simplefilter("ignore")
def fit(m):
    t = time.perf_counter()
    gm = GaussianMixture(k, covariance_type=ct, max_iter=m, tol=0, random_state=0).fit(X)
    return gm, time.perf_counter() - t
fit(1)  # compiles every program; the two timed fits below differ by ``iters`` iterations
_, t1 = fit(1)
gm, t2 = fit(1 + iters)
print(json.dumps({"t_one": t1, "t_many": t2, "n_iter": gm.n_iter_,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def write_data(path, n, d, k, seed=0, chunk=1_000_000):
    if os.path.exists(path) and np.load(path, mmap_mode="r").shape == (n, d):
        return
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d)).astype(np.float32)
    header = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        lab = rng.integers(0, k, hi - lo)
        header[lo:hi] = centres[lab] + rng.normal(size=(hi - lo, d)).astype(np.float32)
    header.flush()
    del header


def read_rate(path, chunk_bytes=64 * 2**20):
    """GB/s of chunked plain reads of the file: cold (pages dropped from the cache first, where
    the kernel allows it) and warm."""
    size = os.path.getsize(path)
    rates = []
    for drop in (True, False):
        with open(path, "rb") as f:
            if drop and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            t = time.perf_counter()
            while f.read(chunk_bytes):
                pass
            rates.append(size / (time.perf_counter() - t) / 1e9)
    return rates


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e6,1e7", help="comma list of n (e.g. 1e6,1e7,1e8)")
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--components", type=int, default=5)
    ap.add_argument("--type", default="diag")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations after the first")
    ap.add_argument("--dir", default="/tmp/bench_scale")
    args = ap.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    d, k = args.features, args.components
    rows = []
    for n in (int(float(s)) for s in args.sizes.split(",")):
        path = os.path.join(args.dir, f"X_{n}_{d}.npy")
        t = time.perf_counter()
        write_data(path, n, d, k)
        gen = time.perf_counter() - t
        cold, warm = read_rate(path)
        out = subprocess.run(
            [sys.executable, "-c", FIT, path, str(k), args.type, str(args.iters)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        s_it = (r["t_many"] - r["t_one"]) / args.iters
        rows.append(
            {
                "n": n,
                "file GB": os.path.getsize(path) / 1e9,
                "s/it": s_it,
                "rows/s": n / s_it if s_it > 0 else float("nan"),
                "read GB/s cold": cold,
                "read GB/s warm": warm,
                "peak RSS MB": r["maxrss_kb"] / 1024,
                "write s": gen,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.4g}" for c in keys) + " |")
    print(f"\n(d={d}, K={k}, {args.type}, float32, load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
