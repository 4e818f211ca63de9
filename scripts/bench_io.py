"""Time ``bayesgmm.io.read_data`` on a CSV file against ``np.loadtxt`` on the same file.

Usage::

    python scripts/bench_io.py --rows 200000 --cols 10 --repeats 3

Writes a random float64 matrix with a header line to a temporary CSV file, reads it with both
(best of ``--repeats``), checks that the arrays are identical and prints the times and ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from bayesgmm.io import read_data


def best_of(repeats, fn):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cols", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    X = np.random.default_rng(0).normal(size=(args.rows, args.cols))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.csv")
        header = ",".join(f"x{i}" for i in range(args.cols))
        np.savetxt(path, X, delimiter=",", header=header, comments="")
        t_ours, (ours, _, _) = best_of(args.repeats, lambda: read_data(path))
        t_np, ref = best_of(
            args.repeats, lambda: np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        )
    assert np.array_equal(ours, ref), "read_data and np.loadtxt disagree"
    print(
        f"{args.rows} x {args.cols} CSV: read_data {t_ours:.3f} s, np.loadtxt {t_np:.3f} s, "
        f"ratio {t_ours / t_np:.2f} (identical arrays)"
    )


if __name__ == "__main__":
    main()
