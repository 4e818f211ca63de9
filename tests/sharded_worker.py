"""Run in a subprocess by tests/test_sharded.py, with two host CPU devices (XLA_FLAGS must
be set before JAX starts, so these checks cannot run in the suite's own processes).

``python tests/sharded_worker.py GROUP`` fits every case of GROUP on one device and on two
and prints one JSON line per case: the largest relative difference over every fitted array,
the objectives, the iteration counts and which EM modes ran. The test asserts on them.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bayesgmm import GaussianMixture, Prior, em  # noqa: E402
from bayesgmm.em import driver  # noqa: E402

assert jax.local_device_count() == 2, jax.devices()

MODES: list[str] = []


def _record(program):
    def call(*args, **static):
        MODES.append(static["mode"] + ("/sharded" if static.get("mesh") is not None else ""))
        return program(*args, **static)

    return call


driver._em_program.default = _record(driver._em_program.default)
driver._em_program.small = _record(driver._em_program.small)


def data(n, d, k, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    X = centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    return X.astype(dtype)


def rel_diff(a, b):
    worst = 0.0
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        x, y = np.asarray(x, float), np.asarray(y, float)
        scale = max(np.max(np.abs(x)), np.finfo(float).tiny)
        worst = max(worst, float(np.max(np.abs(x - y)) / scale))
    return worst


def compare(name, X, k, ct, kernels=None, **kw):
    """fit_em on devices=1 and devices=2 from the same key; ``kernels`` forces a family."""
    if kernels is not None:
        em.expanded.use_expanded = lambda dtype, *shape, _k=kernels: (
            _k == "expanded" and dtype == np.float64
        )
    res = {}
    modes = {}
    for devices in (1, 2):
        MODES.clear()
        r = em.fit_em(jax.random.key(1), X, k, ct, max_iter=25, tol=0.0, devices=devices, **kw)
        res[devices] = jax.device_get(r)
        modes[devices] = sorted(set(MODES))
    one, two = res[1], res[2]
    print(
        json.dumps(
            {
                "case": name,
                "dtype": str(X.dtype),
                "rel_params": rel_diff(one.params, two.params),
                "rel_lower_bounds": rel_diff(
                    np.nan_to_num(one.lower_bounds), np.nan_to_num(two.lower_bounds)
                ),
                "n_iter": [np.asarray(one.n_iter).tolist(), np.asarray(two.n_iter).tolist()],
                "modes": modes,
            }
        ),
        flush=True,
    )


def group_kernels():
    # Centred: one block of 3001 rows becomes two (1501 + 1500 and a padding row); 40001
    # rows of 3 x 3 make 3 centred blocks of density.block_rows, evened out to 4.
    for ct in ("full", "tied", "diag", "spherical"):
        compare(f"centred/{ct}/3001", data(3001, 3, 3), 3, ct, kernels="centred")
        if ct == "full":  # the block count does not depend on the type
            compare(f"centred/{ct}/40001", data(40001, 3, 3), 3, ct, kernels="centred")
        # Expanded: 5 blocks of 1024 rows (the last padded) evened out to 6 over 2 devices.
        compare(f"expanded/{ct}/5001", data(5001, 4, 3), 3, ct, kernels="expanded")
        # k-means++ seeds give every component the variance reg_covar: the first expanded
        # step is refused, a centred "resume" run redoes it, the expanded kernels take over.
        X = data(5001, 4, 3)
        compare(f"resume/{ct}/5001", X, 3, ct, kernels="expanded", init_params="k-means++")


def group_options():
    X = data(6001, 5, 4)
    w = np.random.default_rng(2).integers(0, 4, len(X)).astype(float)
    for ct in ("full", "diag"):
        prior = Prior.default(X, 4, ct)
        compare(f"map+restarts/{ct}", X, 4, ct, prior=prior, n_init=3)
        compare(f"weights/{ct}", X, 4, ct, sample_weight=w, n_init=2)
        compare(f"random-init/{ct}", X, 4, ct, init_params="random", n_init=2)
    for ct in ("full", "tied", "spherical"):
        compare(f"float32/{ct}", data(6001, 5, 4, "float32"), 4, ct)
    # Fewer rows than devices x block: a block that is all padding on one device.
    compare("tiny/full", data(5, 2, 2), 2, "full")
    # The estimator: devices=2 against devices=1, every fitted attribute.
    Xg = data(20000, 6, 5)
    fits = {dv: GaussianMixture(5, random_state=0, devices=dv).fit(Xg) for dv in (1, 2)}
    attrs = ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_")
    print(
        json.dumps(
            {
                "case": "estimator",
                "dtype": "float64",
                "rel_params": max(
                    rel_diff(getattr(fits[1], a), getattr(fits[2], a)) for a in attrs
                ),  # noqa: E501
                "rel_lower_bounds": 0.0,
                "n_iter": [fits[1].n_iter_, fits[2].n_iter_],
                "modes": {},
            }
        )
    )
    # devices=None: every local device, except small problems (one device, one program).
    print(
        json.dumps(
            {
                "case": "default",
                "large": driver.em_mesh(None, 100_000, 10, 10).size,
                "small": driver.em_mesh(None, 300, 2, 2) is None,
            }
        )
    )


def group_nuts(extended=False):
    """The NumPyro likelihood with its rows on one device and on two.

    The potential energy and its gradient (what NUTS sees) at given points, for every case;
    then fit_posterior from the same seed on one and on two devices, whose draws agree in
    distribution (the test compares moments): NUTS trajectories are chaotic in the last bit
    of the potential, so a different summation order gives different chains after a few
    hundred steps, as reordering the rows on one device does."""
    from numpyro.infer.util import potential_energy

    from bayesgmm import fit_posterior
    from bayesgmm._devices import resolve_devices, row_mesh
    from bayesgmm.marginal import missing_patterns
    from bayesgmm.model import gmm_model
    from bayesgmm.sampler import _shard_rows, resolve_likelihood_mesh

    mesh = row_mesh(resolve_devices(2))
    X = data(2001, 3, 2)  # odd: the second device's share has a padding row
    w = np.random.default_rng(3).integers(1, 3, len(X)).astype(float)
    Xm = X.copy()
    Xm[np.random.default_rng(4).random(X.shape) < 0.1] = np.nan
    cases = [
        ("nuts/full", X, dict(covariance_type="full")),
        ("nuts/diag+weights", X, dict(covariance_type="diag", sample_weight=w)),
        ("nuts/spherical+missing", Xm, dict(covariance_type="spherical", missing="marginalize")),
    ]
    for name, Xc, kw in cases:
        ct = kw["covariance_type"]
        prior = Prior.default(np.nan_to_num(Xc), 2, ct)
        missing = None
        rows = Xc
        if np.isnan(Xc).any():
            pat = missing_patterns(Xc)
            rows, missing = pat.filled, (pat.observed, pat.index, pat.patterns)
        one = (
            jax.numpy.asarray(rows),
            None if "sample_weight" not in kw else jax.numpy.asarray(kw["sample_weight"]),
            None if missing is None else tuple(jax.numpy.asarray(a) for a in missing),
        )
        two = _shard_rows(one, mesh)
        model_kw = {"n_components": 2, "covariance_type": ct, "prior": prior}
        energy = jax.jit(
            jax.value_and_grad(lambda z, d, kw=model_kw: potential_energy(gmm_model, d, kw, z))
        )
        fit = GaussianMixture(2, covariance_type=ct, random_state=0).fit(np.nan_to_num(Xc))
        from numpyro.infer.util import unconstrain_fn

        z0 = unconstrain_fn(
            gmm_model,
            (),
            model_kw,
            {"weights": fit.weights_, "means": fit.means_, "covariances": fit.covariances_},
        )
        worst = 0.0
        for i in range(3):
            rng = np.random.default_rng(i)
            z = {k: v + 0.05 * i * rng.normal(size=v.shape) for k, v in z0.items()}
            (e1, g1), (e2, g2) = energy(z, one), energy(z, two)
            worst = max(worst, rel_diff((e1, g1), (e2, g2)))
        print(json.dumps({"case": name + "/energy", "rel_energy": worst}), flush=True)
        if not extended and name != "nuts/diag+weights":
            continue
        posts = {
            dv: fit_posterior(
                Xc,
                2,
                num_warmup=200,
                num_samples=200,
                num_chains=2,
                seed=0,
                chain_method="sequential",
                progress_bar=False,
                devices=dv,
                **kw,
            )  # fmt: skip
            for dv in (1, 2)
        }
        moments = {}
        for dv, post in posts.items():
            leaves = [np.asarray(a, float) for a in jax.tree_util.tree_leaves(post.draws)]
            moments[dv] = [
                (leaf.reshape(-1, *leaf.shape[2:]).mean(0).ravel().tolist(),
                 leaf.reshape(-1, *leaf.shape[2:]).std(0).ravel().tolist())
                for leaf in leaves
            ]  # fmt: skip
        print(json.dumps({"case": name + "/draws", "moments": moments}), flush=True)
    # devices=None: a large problem with sequential chains shards; parallel chains do not.
    print(
        json.dumps(
            {
                "case": "nuts-default",
                "large": resolve_likelihood_mesh(None, "sequential", 100_000, 3, 5).size,
                "parallel": resolve_likelihood_mesh(None, "parallel", 100_000, 3, 5) is None,
                "small": resolve_likelihood_mesh(None, "sequential", 200, 2, 2) is None,
            }
        )
    )


if __name__ == "__main__":
    groups = {"kernels": group_kernels, "options": group_options, "nuts": group_nuts}
    if sys.argv[1] == "nuts-extended":
        group_nuts(extended=True)
    else:
        groups[sys.argv[1]]()
