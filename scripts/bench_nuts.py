"""NUTS benchmark: bayesgmm (NumPyro) against PyMC, nutpie and Stan on one Gaussian mixture.

The problem: 2-D data, 3 components, full covariances, 500 points; 4 chains of 1000 warm-up
and 1000 kept draws; the same model everywhere - Dirichlet weights, inverse-Wishart
covariances, normal means given the covariances (mclust's default prior, ``Prior.default``),
assignments summed out - and every sampler started at the same MAP-EM solution (bayesgmm
jitters it slightly, by about a posterior standard deviation; Stan, PyMC and nutpie start every
chain exactly there).

For each system it prints wall time of the sampling alone, compile/set-up time, and the
minimum bulk ESS (ArviZ) over all weights and means after relabeling the draws to the MAP-EM
solution (the same Hungarian relabeling for every system), per second of sampling and per
second of the whole call.

Usage::

    python scripts/bench_nuts.py                 # all systems, chains in one process
    python scripts/bench_nuts.py --only bayesgmm --devices 2
    python scripts/bench_nuts.py --skip pymc stan
    python scripts/bench_nuts.py --only nutpie --draws 100    # a short check of one system

``--devices N`` asks JAX for N CPU devices (bayesgmm then runs chains in parallel). PyMC,
nutpie, Stan and the BLAS for PyTensor come from the ``bench`` extra
(``pip install -e ".[bench]"``); a system that is not installed is reported and skipped.

The systems:

- ``pymc``: PyMC's own NUTS on PyTensor's default C backend, which must be linked to a BLAS.
  pip's PyTensor finds none on a machine without a system BLAS and then runs its BLAS ops
  (Dot22, Gemv, ...) as Python code (PyTensor itself recommends conda for this). This script links
  it to the OpenBLAS of the ``scipy-openblas32`` wheel (the one SciPy's own wheels bundle,
  32-bit integers, symbols prefixed ``scipy_``): ``blas__ldflags`` names the library, its
  rpath, and one ``-D dgemm_=scipy_dgemm_`` per BLAS routine PyTensor declares, set in
  ``PYTENSOR_FLAGS`` before PyTensor is imported. It then checks the link (PyTensor's own
  ``try_blas_flag`` and a compiled matrix product whose BLAS nodes must run as C code) and
  stops with an error instead of falling back. A ``blas__ldflags`` already in
  ``PYTENSOR_FLAGS`` (a system BLAS, MKL) is used as given and checked the same way.
  ``pymc-numba`` is the same model and sampler with ``compile_kwargs={"mode": "NUMBA"}``.
- ``nutpie``: nutpie's Rust NUTS on the same PyMC model, compiled by
  ``nutpie.compile_pymc_model`` (numba backend), started at the MAP-EM point through its
  ``initial_points`` argument with ``jitter_rvs=set()`` (no jitter); nutpie's default
  (gradient-based) mass-matrix adaptation. Its chains run in ``--pymc-cores`` threads.
- ``stan``: pystan 3, whose httpstan wheel bundles Stan and builds the model's C++ with the
  machine's g++ (minutes, once; cached under ``~/.cache/httpstan``). cmdstanpy is not
  benchmarked: it needs CmdStan, which ``cmdstanpy.install_cmdstan()`` downloads from GitHub,
  and this machine reaches only package registries.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time

NUM_WARMUP = 1000
NUM_SAMPLES = 1000
NUM_CHAINS = 4
K = 3


def make_data():
    import numpy as np

    rng = np.random.default_rng(2024)
    means = np.array([[0.0, 0.0], [4.0, 1.0], [1.0, 4.5]])
    covs = np.array(
        [[[1.0, 0.4], [0.4, 0.6]], [[0.5, -0.2], [-0.2, 0.8]], [[0.7, 0.0], [0.0, 0.7]]]
    )
    counts = (200, 150, 150)
    return np.concatenate(
        [rng.multivariate_normal(m, c, size=n) for m, c, n in zip(means, covs, counts)]
    )


def min_bulk_ess(weights, means, covariances, map_params):
    """Relabel (chain, draw) draws to the MAP solution; min bulk ESS over weights and means."""
    import arviz as az
    import numpy as np

    from bayesgmm import GMMParams
    from bayesgmm.relabel import permute_draws, relabel_draws

    draws = GMMParams(weights, means, covariances, "full", validate=False)
    perms = relabel_draws(draws, map_params)
    rel = permute_draws(draws, perms)
    ds = az.convert_to_dataset({"weights": np.asarray(rel.weights), "means": np.asarray(rel.means)})
    ess = az.ess(ds, method="bulk")
    rhat = az.rhat(ds)
    return (
        float(min(ess[v].min() for v in ess.data_vars)),
        float(max(rhat[v].max() for v in rhat.data_vars)),
    )


def result_row(
    system, *, sampling, compile_s, ess, rhat, divergences, first=None, later=None, **extra
):
    """One row of the table: times in seconds; ``first`` is the whole first call (default
    compile plus sampling), ``later`` a later call's whole time (where a system can reuse its
    compiled model), ``extra`` more columns (``note``, ...)."""
    first = compile_s + sampling if first is None else first
    row = {
        "system": system,
        **{k: v for k, v in extra.items() if k == "note"},
        "sampling_s": sampling,
        "compile_s": compile_s,
        "first_call_s": first,
        **{k: v for k, v in extra.items() if k != "note"},
        "min_ess_bulk": ess,
        "max_rhat": rhat,
        "ess_per_s_sampling": ess / sampling,
        "ess_per_s_whole_first_call": ess / first,
    }
    if later is not None:
        row["ess_per_s_whole_later_calls"] = ess / later
    row["divergences"] = divergences
    return row


def map_fit(X):
    from bayesgmm import GaussianMixture

    return GaussianMixture(
        K, prior="default", reg_covar=0.0, tol=1e-8, max_iter=1000, n_init=4, random_state=0
    ).fit(X)


# ---------------------------------------------------------------------------------------------
def bench_bayesgmm(X):
    import jax
    import numpy as np

    from bayesgmm import fit_posterior
    from bayesgmm import sampler as P

    timings = {}
    real = P._sample_nuts

    def timed(*args, **kwargs):
        t = time.perf_counter()
        out = real(*args, **kwargs)
        timings["nuts"] = time.perf_counter() - t
        return out

    P._sample_nuts = timed
    settings = dict(
        num_warmup=NUM_WARMUP, num_samples=NUM_SAMPLES, num_chains=NUM_CHAINS, progress_bar=False
    )
    t = time.perf_counter()
    fit_posterior(X, K, seed=0, **settings)
    first_call = time.perf_counter() - t
    first_nuts = timings["nuts"]
    # Second call, same shapes: nothing compiles. Its NUTS time is the sampling time.
    t = time.perf_counter()
    post = fit_posterior(X, K, seed=1, **settings)
    second_call = time.perf_counter() - t
    sampling = timings["nuts"]
    ess, rhat = min_bulk_ess(
        post.draws.weights, post.draws.means, post.draws.covariances, post.map_params
    )
    return result_row(
        f"bayesgmm (NumPyro {__import__('numpyro').__version__}), "
        f"{jax.local_device_count()} device(s), chains {post.settings['chain_method']}",
        sampling=sampling,
        compile_s=first_nuts - sampling,
        ess=ess,
        rhat=rhat,
        divergences=int(np.sum(post.sample_stats["diverging"])),
        first=first_call,
        later=second_call,
        second_call_s=second_call,
    )


def bench_numpyro_mcmc(X, chain_method="sequential"):
    """The same model, start and settings through ``numpyro.infer.MCMC`` (NumPyro's own
    driver) with ``jit_model_args=True``: issue "One straight house" asks to keep it unless it
    cannot hold bayesgmm's speed. Two runs of one MCMC object (the second with new data of the
    same shape), then a new MCMC object, as a user calling fit repeatedly would."""
    from functools import partial

    import jax
    import numpy as np
    import numpyro
    from numpyro.infer import MCMC, NUTS

    from bayesgmm import Prior
    from bayesgmm.model import SITE_NAMES, gmm_model
    from bayesgmm.posterior import _map_start
    from bayesgmm.sampler import NUTSSettings, _jittered_init

    prior = Prior.default(X, K, "full")
    start = _map_start(X, K, "full", prior, jax.random.key(0)).params
    settings = NUTSSettings(K, "full", NUM_WARMUP, NUM_SAMPLES, 0.8, 10, False, 0)
    init_z = _jittered_init(jax.random.key(1), X, start, prior, settings, NUM_CHAINS, 1.0)

    def make():
        return MCMC(
            # Static model arguments bound here: with jit_model_args=True every argument
            # given to run() is traced, and strings cannot be.
            NUTS(partial(gmm_model, n_components=K, covariance_type="full")),
            num_warmup=NUM_WARMUP,
            num_samples=NUM_SAMPLES,
            num_chains=NUM_CHAINS,
            chain_method=chain_method,
            jit_model_args=True,
            progress_bar=False,
        )

    kwargs = {"prior": prior}
    mcmc = make()
    t = time.perf_counter()
    mcmc.run(jax.random.key(2), X, init_params=init_z, **kwargs)
    jax.block_until_ready(mcmc.get_samples())
    first = time.perf_counter() - t
    X2 = X + 1e-3  # new data, same shape: jit_model_args should reuse the program
    t = time.perf_counter()
    mcmc.run(jax.random.key(3), X2, init_params=init_z, **kwargs)
    jax.block_until_ready(mcmc.get_samples())
    second = time.perf_counter() - t
    t = time.perf_counter()
    fresh = make()
    fresh.run(jax.random.key(3), X, init_params=init_z, **kwargs)
    samples = fresh.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    new_object = time.perf_counter() - t
    w, m, c = (np.asarray(samples[s]) for s in SITE_NAMES)
    ess, rhat = min_bulk_ess(w, m, c, start)
    div = int(np.sum(np.asarray(fresh.get_extra_fields()["diverging"])))
    return result_row(
        f"numpyro.infer.MCMC (NumPyro {numpyro.__version__}), jit_model_args=True, "
        f"chains {chain_method}",
        sampling=second,
        compile_s=first - second,
        ess=ess,
        rhat=rhat,
        divergences=div,
        later=new_object,
        second_call_s=second,
        new_object_s=new_object,
    )


# ---------------------------------------------------------------------------------------------
STAN_CODE = """
data {
  int<lower=1> N; int<lower=1> K; int<lower=1> D;
  matrix[D, N] xt;
  vector<lower=0>[K] alpha; vector[D] m0; real<lower=0> kappa; real<lower=D - 1> nu;
  cov_matrix[D] Psi;
}
parameters {
  simplex[K] w;
  array[K] vector[D] mu;
  array[K] cov_matrix[D] Sigma;
}
model {
  matrix[N, K] lp;
  w ~ dirichlet(alpha);
  for (k in 1:K) {
    matrix[D, D] L = cholesky_decompose(Sigma[k]);
    Sigma[k] ~ inv_wishart(nu, Psi);
    mu[k] ~ multi_normal(m0, Sigma[k] / kappa);
    // all points at once: z = L^-1 (x - mu), log N = -|z|^2/2 - log det L - D/2 log(2 pi)
    matrix[D, N] z = mdivide_left_tri_low(L, xt - rep_matrix(mu[k], N));
    lp[:, k] = log(w[k]) - 0.5 * columns_dot_self(z)' - sum(log(diagonal(L)))
               - 0.5 * D * log(2 * pi());
  }
  for (n in 1:N) target += log_sum_exp(lp[n]);
}
"""


def bench_stan(X, gm):
    import aiohttp
    import numpy as np
    import stan

    class _NoTimeoutSession(aiohttp.ClientSession):
        # pystan talks to its in-process httpstan server with aiohttp's default 300 s timeout,
        # shorter than building the model's C++ on a busy machine; the build is cached after.
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("timeout", aiohttp.ClientTimeout(total=None))
            super().__init__(*args, **kwargs)

    aiohttp.ClientSession = _NoTimeoutSession

    prior = gm.prior_
    data = {
        "N": X.shape[0],
        "K": K,
        "D": X.shape[1],
        "xt": X.T,
        "alpha": np.asarray(prior.weight_concentration),
        "m0": np.asarray(prior.mean),
        "kappa": float(prior.mean_precision),
        "nu": float(prior.dof),
        "Psi": np.asarray(prior.scale),
    }
    init = {"w": gm.weights_, "mu": gm.means_, "Sigma": gm.covariances_}
    t = time.perf_counter()
    model = stan.build(STAN_CODE, data=data, random_seed=1)
    build = time.perf_counter() - t
    t = time.perf_counter()
    fit = model.sample(
        num_chains=NUM_CHAINS,
        num_samples=NUM_SAMPLES,
        num_warmup=NUM_WARMUP,
        init=[init] * NUM_CHAINS,
    )
    sampling = time.perf_counter() - t

    def chains(a):  # (..., draws * chains) with chain varying fastest -> (chain, draw, ...)
        a = a.reshape(a.shape[:-1] + (NUM_SAMPLES, NUM_CHAINS))
        return np.moveaxis(np.moveaxis(a, -1, 0), -1, 1)

    w = chains(fit["w"])
    mu = chains(fit["mu"])
    sig = chains(fit["Sigma"])
    ess, rhat = min_bulk_ess(w, mu, sig, gm.params_)
    return result_row(
        f"Stan (pystan {stan.__version__}), chains in parallel processes",
        sampling=sampling,
        compile_s=build,
        ess=ess,
        rhat=rhat,
        divergences=int(np.sum(fit["divergent__"])),
    )


# ---------------------------------------------------------------------------------------------
# PyTensor declares the Fortran BLAS routines it calls in this file of its source; each is
# renamed to the prefixed symbol of scipy-openblas32 (``-D ddot_=scipy_ddot_``).
_PYTENSOR_BLAS_HEADERS = ("tensor", "blas_headers.py")
_BLAS_NAME = re.compile(r"\b([sdcz][a-z0-9]+_)\s*\(")


def configure_pytensor_blas():
    """Point PyTensor's C backend at a BLAS before PyTensor is imported.

    A ``blas__ldflags`` the user put in ``PYTENSOR_FLAGS`` is kept; otherwise the flags name
    scipy-openblas32's library. Returns (short name, details) of the BLAS; raises
    ``RuntimeError`` if there is none.
    """
    import ctypes
    from pathlib import Path

    if "pytensor" in sys.modules:
        raise RuntimeError("configure_pytensor_blas() must run before pytensor is imported")
    user_flags = os.environ.get("PYTENSOR_FLAGS", "")
    if re.search(r"blas(__|\.)ldflags\s*=", user_flags):
        return "BLAS from PYTENSOR_FLAGS", f"PYTENSOR_FLAGS={user_flags}"
    try:
        import scipy_openblas32
    except ImportError as err:
        raise RuntimeError(
            "PyMC's C backend needs a BLAS: pip install scipy-openblas32 (in the bench extra), "
            "or give PYTENSOR_FLAGS=blas__ldflags=... for another one"
        ) from err
    lib_dir = Path(scipy_openblas32.get_lib_dir())
    lib = scipy_openblas32.get_library()  # "scipy_openblas"
    dll = ctypes.CDLL(str(lib_dir / f"lib{lib}.so"))
    spec = importlib.util.find_spec("pytensor")
    if spec is None or spec.origin is None:
        raise RuntimeError("pytensor is not installed")
    header_src = Path(spec.origin).parent.joinpath(*_PYTENSOR_BLAS_HEADERS).read_text()
    names = sorted({n for n in _BLAS_NAME.findall(header_src) if hasattr(dll, "scipy_" + n)})
    if "dgemm_" not in names or "dgemv_" not in names:
        raise RuntimeError(f"no scipy_dgemm_/scipy_dgemv_ in {lib_dir}/lib{lib}.so")
    flags = " ".join(
        [f"-L{lib_dir}", f"-l{lib}", f"-Wl,-rpath,{lib_dir}"] + [f"-D{n}=scipy_{n}" for n in names]
    )
    # PYTENSOR_FLAGS is split at commas (shlex-style, so quotes protect the rpath's commas).
    entry = "blas__ldflags=" + shlex.quote(flags)
    os.environ["PYTENSOR_FLAGS"] = f"{user_flags},{entry}" if user_flags else entry
    version = importlib.metadata.version("scipy-openblas32")
    return (
        f"OpenBLAS {'.'.join(version.split('.')[:3])} (scipy-openblas32)",
        f"{scipy_openblas32.get_openblas_config()}, scipy-openblas32 {version}, "
        f"{lib_dir}/lib{lib}.so",
    )


def check_pytensor_blas():
    """Fail unless PyTensor's C backend compiles and links BLAS code (no Python fallback)."""
    import numpy as np
    import pytensor
    import pytensor.tensor as pt
    from pytensor.link.c.cmodule import try_blas_flag

    flags = pytensor.config.blas__ldflags
    if not pytensor.config.cxx:
        raise RuntimeError("PyTensor found no C++ compiler (config.cxx is empty)")
    if not flags:
        raise RuntimeError("PyTensor has no BLAS (config.blas__ldflags is empty)")
    if not try_blas_flag(shlex.split(flags)):
        raise RuntimeError(f"PyTensor's BLAS test program does not link with {flags!r}")
    a, b = pt.dmatrix("a"), pt.dmatrix("b")
    v = pt.dvector("v")
    fn = pytensor.function([a, b, v], [a @ b, a @ v])
    rng = np.random.default_rng(0)
    a0, b0, v0 = rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=3)
    ab, av = fn(a0, b0, v0)
    if not (np.allclose(ab, a0 @ b0) and np.allclose(av, a0 @ v0)):
        raise RuntimeError("PyTensor's BLAS matrix product gives wrong numbers")
    blas_nodes = {
        type(node.op).__name__: hasattr(thunk, "cthunk")
        for node, thunk in zip(fn.vm.nodes, fn.vm.thunks)
        if type(node.op).__name__ in {"Dot22", "Gemm", "CGemv", "Gemv"}
    }
    if not blas_nodes or not all(blas_nodes.values()):
        raise RuntimeError(f"PyTensor's BLAS ops do not run as C code: {blas_nodes}")


def _configure_pytensor_blas_if_possible():
    # For the numba rows: their logp does not use it, but PyTensor still compiles a few
    # helpers (initial points) with its C backend and otherwise warns that it has no BLAS.
    try:
        configure_pytensor_blas()
    except RuntimeError as err:
        print(f"note: {err}", file=sys.stderr)


def pymc_model(X, gm):
    """The model in PyMC, and the MAP-EM point as initial values of its free variables."""
    import numpy as np
    import pymc as pm
    import pytensor.tensor as pt
    from scipy.special import multigammaln

    prior = gm.prior_
    alpha = np.asarray(prior.weight_concentration)
    m0 = np.asarray(prior.mean)
    kappa = float(prior.mean_precision)
    nu = float(prior.dof)
    psi = np.asarray(prior.scale)
    d = X.shape[1]
    assert d == 2, "the PyMC model below is written for 2-D data"
    # inverse-Wishart log normaliser (PyMC has no inverse-Wishart distribution)
    iw_const = (
        0.5 * nu * np.log(np.linalg.det(psi)) - 0.5 * nu * d * np.log(2) - multigammaln(nu / 2, d)
    )

    # Covariances through their Cholesky factors: free (log l11, l21, log l22) per component,
    # plus the Jacobian of (free) -> Sigma so that the prior is inverse-Wishart on Sigma.
    chol0 = np.linalg.cholesky(gm.covariances_)
    free0 = np.stack([np.log(chol0[:, 0, 0]), chol0[:, 1, 0], np.log(chol0[:, 1, 1])], axis=1)
    with pm.Model() as model:
        w = pm.Dirichlet("weights", a=alpha)
        free = pm.Flat("chol_free", shape=(K, 3))
        l11, l21, l22 = pt.exp(free[:, 0]), free[:, 1], pt.exp(free[:, 2])
        zeros = pt.zeros_like(l11)
        L = pt.stack([pt.stack([l11, zeros], -1), pt.stack([l21, l22], -1)], -2)  # (K, 2, 2)
        sigma = pm.Deterministic("covariances", L @ pt.swapaxes(L, -1, -2))
        # log|d Sigma / d L| = d log 2 + sum_i (d - i + 1) log l_ii (i from 1), plus log l_ii
        # for l_ii = exp(free): 2 log 2 + 3 log l11 + 2 log l22 in 2-D.
        log_jac = 2 * np.log(2.0) + 3 * free[:, 0] + 2 * free[:, 2]
        det = l11**2 * l22**2
        inv = pt.linalg.inv(sigma)
        tr = pt.sum(psi[None] * inv, axis=(-2, -1))
        iw_logp = iw_const - 0.5 * (nu + d + 1) * pt.log(det) - 0.5 * tr
        pm.Potential("sigma_prior", pt.sum(iw_logp + log_jac))
        mus = [
            pm.MvNormal(f"mu{k}", mu=m0, cov=sigma[k] / kappa, initval=gm.means_[k])
            for k in range(K)
        ]
        comps = [pm.MvNormal.dist(mu=mus[k], cov=sigma[k]) for k in range(K)]
        pm.Mixture("obs", w=w, comp_dists=comps, observed=X)
    init = {"weights": gm.weights_, "chol_free": free0}
    init.update({f"mu{k}": gm.means_[k] for k in range(K)})
    return model, init


def pymc_draws(posterior):
    """(weights, means, covariances) as (chain, draw, ...) arrays from a PyMC-style posterior."""
    import numpy as np

    means = np.stack([posterior[f"mu{k}"].values for k in range(K)], axis=2)
    return posterior["weights"].values, means, posterior["covariances"].values


def bench_pymc(X, gm, cores, mode=None):
    """PyMC's NUTS; ``mode=None`` is PyTensor's default C backend, which must have a BLAS."""
    blas = details = None
    if mode is None:
        blas, details = configure_pytensor_blas()
        check_pytensor_blas()
        print(f"PyTensor C backend linked to {blas}: {details}", file=sys.stderr)
    else:
        _configure_pytensor_blas_if_possible()
    import pymc as pm

    t = time.perf_counter()
    model, init = pymc_model(X, gm)
    t_model = time.perf_counter() - t
    t = time.perf_counter()
    idata = pm.sample(
        draws=NUM_SAMPLES,
        tune=NUM_WARMUP,
        chains=NUM_CHAINS,
        cores=cores,
        model=model,
        initvals=init,
        # every chain starts at the MAP-EM point, as in Stan (the default, "jitter+adapt_diag",
        # would move it by U(-1, 1) in every unconstrained coordinate); same adaptation
        init="adapt_diag",
        progressbar=False,
        compute_convergence_checks=False,
        random_seed=1,
        compile_kwargs=None if mode is None else {"mode": mode},
    )
    total = time.perf_counter() - t
    sampling = float(idata.posterior.attrs.get("sampling_time", total))
    ess, rhat = min_bulk_ess(*pymc_draws(idata.posterior), gm.params_)
    setup = t_model + total - sampling
    backend = f"C backend, {blas}" if mode is None else f"{mode} backend"
    return result_row(
        f"PyMC {pm.__version__} ({backend}), {cores} core(s)",
        note=details or f"compile_kwargs={{'mode': '{mode}'}}",
        sampling=sampling,
        compile_s=setup,
        ess=ess,
        rhat=rhat,
        divergences=int(idata.sample_stats["diverging"].values.sum()),
    )


def bench_nutpie(X, gm, cores):
    """nutpie's NUTS (Rust) on the PyMC model, compiled by PyTensor's numba backend."""
    _configure_pytensor_blas_if_possible()
    import nutpie

    t = time.perf_counter()
    model, init = pymc_model(X, gm)
    compiled = nutpie.compile_pymc_model(
        model, backend="numba", initial_points=init, jitter_rvs=set()
    )
    setup = time.perf_counter() - t
    t = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=NUM_SAMPLES,
        tune=NUM_WARMUP,
        chains=NUM_CHAINS,
        cores=cores,
        seed=1,
        progress_bar=False,
    )
    sampling = time.perf_counter() - t
    ess, rhat = min_bulk_ess(*pymc_draws(idata.posterior), gm.params_)
    return result_row(
        f"nutpie {nutpie.__version__} (numba backend), {cores} core(s)",
        note="started at MAP-EM: compile_pymc_model(initial_points=..., jitter_rvs=set())",
        sampling=sampling,
        compile_s=setup,
        ess=ess,
        rhat=rhat,
        divergences=int(idata.sample_stats["diverging"].values.sum()),
    )


# ---------------------------------------------------------------------------------------------
SYSTEMS = (
    "bayesgmm",
    "numpyro-mcmc-sequential",
    "numpyro-mcmc-vectorized",
    "stan",
    "pymc",
    "pymc-numba",
    "nutpie",
)


def run_one(name, devices, cores):
    if devices > 1:
        import numpyro

        numpyro.set_host_device_count(devices)
    import bayesgmm  # noqa: F401  (x64)

    X = make_data()
    if name == "bayesgmm":
        return bench_bayesgmm(X)
    if name.startswith("numpyro-mcmc"):
        return bench_numpyro_mcmc(X, name.removeprefix("numpyro-mcmc-") or "sequential")
    gm = map_fit(X)
    if name == "stan":
        return bench_stan(X, gm)
    if name == "nutpie":
        return bench_nutpie(X, gm, cores)
    if name == "pymc-numba":
        return bench_pymc(X, gm, cores, mode="NUMBA")
    return bench_pymc(X, gm, cores)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=SYSTEMS)
    parser.add_argument("--skip", nargs="*", default=[], choices=SYSTEMS)
    parser.add_argument(
        "--devices",
        type=int,
        default=0,
        help="JAX CPU devices for bayesgmm (default: run with 1 and with 2)",
    )
    parser.add_argument(
        "--pymc-cores", type=int, default=1, help="chains in parallel for PyMC and nutpie"
    )
    parser.add_argument(
        "--draws",
        type=int,
        default=1000,
        help="warm-up steps and kept draws per chain (default 1000 each)",
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global NUM_WARMUP, NUM_SAMPLES
    NUM_WARMUP = NUM_SAMPLES = args.draws
    if args.only:
        res = run_one(args.only, max(args.devices, 1), args.pymc_cores)
        print(json.dumps(res) if args.json else res)
        return
    runs = []
    for devices in [args.devices] if args.devices else [1, 2]:
        runs.append(("bayesgmm", ["--devices", str(devices), "--draws", str(args.draws)]))
    runs += [
        (s, ["--pymc-cores", str(args.pymc_cores), "--draws", str(args.draws)])
        for s in SYSTEMS
        if s != "bayesgmm"
    ]
    rows = []
    for name, extra in runs:
        if name in args.skip:
            continue
        # Each system in a fresh process: no shared compilation caches or thread pools.
        out = subprocess.run(
            [sys.executable, __file__, "--only", name, "--json", *extra],
            capture_output=True,
            text=True,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode or not lines:
            print(f"{name}: FAILED\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(lines[-1]))
        print(f"done: {rows[-1]['system']}", file=sys.stderr)
    print_table(rows)


def print_table(rows):
    print(
        f"\n2-D, {K} components, full covariance, 500 points; {NUM_CHAINS} chains x "
        f"({NUM_WARMUP} warm-up + {NUM_SAMPLES} draws); min bulk ESS over weights and means "
        "after relabeling\n"
    )
    print(
        "| system | sampling s | compile / set-up s | later call s | min bulk ESS | max R-hat "
        "| ESS/s sampling | ESS/s whole first call | divergences | note |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        later = r.get("new_object_s", r.get("second_call_s", float("nan")))
        print(
            f"| {r['system']} | {r['sampling_s']:.1f} | {r['compile_s']:.1f} | {later:.1f} | "
            f"{r['min_ess_bulk']:.0f} | {r['max_rhat']:.3f} | {r['ess_per_s_sampling']:.0f} | "
            f"{r['ess_per_s_whole_first_call']:.0f} | {r['divergences']} | {r.get('note', '')} |"
        )


if __name__ == "__main__":
    main()
