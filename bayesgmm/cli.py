"""The ``bayesgmm`` command."""

from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    import numpy as np

    from .estimator import GaussianMixture

    rng = np.random.default_rng(0)
    X = np.concatenate(
        [
            rng.normal([0.0, 0.0], [1.0, 0.5], (300, 2)),
            rng.normal([5.0, 5.0], [0.5, 1.5], (200, 2)),
            rng.normal([0.0, 6.0], 1.0, (250, 2)),
        ]
    )
    gm = GaussianMixture(3, random_state=0).fit(X)
    print(
        f"EM fit of 3 components to {len(X)} points: converged={gm.converged_} "
        f"in {gm.n_iter_} iterations, mean log-likelihood {gm.lower_bound_:.4f}"
    )
    for k in range(3):
        print(f"  component {k}: weight {gm.weights_[k]:.3f}  mean {np.round(gm.means_[k], 3)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bayesgmm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit a mixture to built-in data and print the result")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
