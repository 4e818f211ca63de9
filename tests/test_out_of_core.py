"""Out-of-core EM and prediction: data read in chunks (Dask arrays, memmaps, HDF5 datasets)
gives the in-memory fit up to summation order, with memory bounded by the chunk size.

The tolerance of the parameter comparisons, rtol 1e-9 in float64: both fits run the same EM
iterations on the same rows, differing only in the order of the sums (chunks versus blocks) and
in the scatter's arithmetic (moved from the current to the new means, or summed around the new
means; both exact, see bayesgmm.em.stream), so they agree to rounding: 1e-12 measured, 1e-9
leaves the slack of a convergence test taken at a slightly different objective."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from bayesgmm import GaussianMixture, Prior, select
from bayesgmm._sources import RowSource, is_out_of_core
from bayesgmm.em import fit_em
from bayesgmm.em.stream import fit_em_stream

da = pytest.importorskip("dask.array")  # in the test extra: present wherever the suite runs

FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def _data(n=6000, d=3, seed=0, offset=0.0, dtype=np.float64):
    """Three overlapping clusters (EM needs a dozen iterations or more), shuffled."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n // 3, d)) + 1.6 * i for i in range(3)])
    X = X[rng.permutation(len(X))] + offset
    return X.astype(dtype)


def _assert_same_fit(a, b, rtol, atol=0.0):
    assert a.n_iter_ == b.n_iter_
    assert a.converged_ == b.converged_
    for name in FITTED:
        np.testing.assert_allclose(
            getattr(b, name), getattr(a, name), rtol=rtol, atol=atol, err_msg=name
        )
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=rtol)


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(scope="module")
def memmap_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("mm") / "X.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=data.dtype, shape=data.shape)
    mm[:] = data
    mm.flush()
    return path


SOURCES = {
    # Dask: regular chunks with a ragged last one; irregular row chunks, two column chunks
    # (joined per row chunk); 8 chunks of 797 rows.
    "dask-ragged": lambda X, path: da.from_array(X, chunks=(1700, -1)),
    "dask-irregular": lambda X, path: da.from_array(X, chunks=((100, 2500, 3400), (2, 1))),
    "dask-small": lambda X, path: da.from_array(X, chunks=(797, -1)),
    "memmap": lambda X, path: np.load(path, mmap_mode="r"),
    # Chunks of 1000 rows from a memmap (6 reads per pass).
    "memmap-chunked": lambda X, path: RowSource(np.load(path, mmap_mode="r"), chunk_rows=1000),
}


#: The types each source is checked with: every type for a Dask array and a memmap, two each
#: for the other chunkings (every type is crossed with several chunkings; the suite's time).
SOURCE_TYPES = {
    "dask-ragged": ("full", "tied", "diag", "spherical"),
    "memmap": ("full", "tied", "diag", "spherical"),
    "dask-irregular": ("full", "tied"),
    "dask-small": ("diag", "spherical"),
    "memmap-chunked": ("tied", "spherical"),
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_fit_equals_in_memory_fit(source, data, memmap_file):
    for ct in SOURCE_TYPES[source]:
        kw = dict(covariance_type=ct, random_state=0, tol=1e-8, max_iter=200)
        ref = GaussianMixture(3, **kw).fit(data)
        got = GaussianMixture(3, **kw).fit(SOURCES[source](data, memmap_file))
        assert ref.n_iter_ >= 10  # a real trajectory, not a start that is already a fixed point
        _assert_same_fit(ref, got, rtol=1e-9)


@pytest.mark.parametrize("source", ["dask-ragged", "memmap"])
def test_predictions_scores_and_criteria_equal_in_memory(source, data, memmap_file):
    gm = GaussianMixture(3, random_state=0).fit(data)
    X = SOURCES[source](data, memmap_file)
    out = {
        "score_samples": gm.score_samples(X),
        "predict_proba": gm.predict_proba(X),
        "predict": gm.predict(X),
    }
    for name, value in out.items():
        # Per-row outputs of Dask input are Dask arrays, computed on demand.
        assert isinstance(value, da.Array) == source.startswith("dask"), name
        np.testing.assert_allclose(np.asarray(value), getattr(gm, name)(data), rtol=1e-12)
    w = np.random.default_rng(1).uniform(0, 2, len(data))
    for name in ("score", "bic", "aic"):
        np.testing.assert_allclose(getattr(gm, name)(X), getattr(gm, name)(data), rtol=1e-12)
        np.testing.assert_allclose(
            getattr(gm, name)(X, sample_weight=w),
            getattr(gm, name)(data, sample_weight=w),
            rtol=1e-12,
        )
    np.testing.assert_array_equal(
        GaussianMixture(3, random_state=0).fit_predict(X), gm.predict(data)
    )


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_initialisation_and_restarts_equal_in_memory(init_params, data):
    X = da.from_array(data, chunks=(2000, -1))
    kw = dict(covariance_type="diag", init_params=init_params, n_init=2, random_state=3, tol=1e-8)
    _assert_same_fit(GaussianMixture(3, **kw).fit(data), GaussianMixture(3, **kw).fit(X), 1e-9)


def test_map_em_weights_and_float32_equal_in_memory(data):
    prior = Prior.default(data, 3, "full")
    w = np.random.default_rng(2).integers(0, 3, len(data)).astype(float)
    X = da.from_array(data, chunks=(2500, -1))
    for kw, fit_kw in (
        ({"prior": prior}, {}),
        ({"prior": "default"}, {}),  # the default prior from every row (n < INIT_ROWS)
        ({}, {"sample_weight": w}),
    ):
        kw = dict(random_state=0, tol=1e-8, **kw)
        _assert_same_fit(
            GaussianMixture(3, **kw).fit(data, **fit_kw),
            GaussianMixture(3, **kw).fit(X, **fit_kw),
            1e-9,
        )
    # float32 stays float32; over the same 15 iterations (tol=0: float32 objectives are too
    # coarse for both runs to stop at the same one) it agrees with the in-memory float32 fit
    # to its rounding: 1e-4 relative, sums of 6000 float32 terms in another order (1e-6)
    # amplified by iterations of a slowly converging mixture.
    X32 = data.astype(np.float32)
    kw = dict(random_state=0, tol=0, max_iter=15)
    with pytest.warns(UserWarning, match="did not converge"):
        ref = GaussianMixture(3, **kw).fit(X32)
        got = GaussianMixture(3, **kw).fit(da.from_array(X32, chunks=(2500, -1)))
    assert got.means_.dtype == np.float32
    assert np.isfinite(got.lower_bounds_).all()
    for name in FITTED:
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("limit", [0.0, None])
def test_one_pass_and_two_pass_scatter_both_equal_in_memory(monkeypatch, data, limit):
    """With the cancellation limit at 0 every iteration recomputes its scatter around the new
    means in a second pass (counted); with the default limit the one-pass update is taken
    throughout, here with the data at 1e6 from the origin, where raw moments would lose 12
    digits. Both give the in-memory fit."""
    from bayesgmm.em import stream

    if limit is not None:
        monkeypatch.setitem(stream.RECENTRE_ERROR_LIMIT, np.dtype(np.float64), limit)
    X = data + 1e6
    calls = []
    original = stream._second_pass
    monkeypatch.setattr(stream, "_second_pass", lambda *a: calls.append(1) or original(*a))
    kw = dict(random_state=0, tol=1e-8, max_iter=300)
    ref = GaussianMixture(3, **kw).fit(X)
    got = GaussianMixture(3, **kw).fit(da.from_array(X, chunks=(2500, -1)))
    assert len(calls) == (got.n_iter_ if limit == 0.0 else 0)
    # At 1e6 from the origin a float64 mean is itself only known to 1e6 eps = 2e-10, so an
    # entry of a covariance (of order 1) is fixed to ~1e-9 absolute, not relative: measured
    # 7e-10 on a 0.03 off-diagonal entry.
    _assert_same_fit(ref, got, 1e-9, atol=1e-8)


def test_far_float32_start_takes_the_second_pass_first(monkeypatch, data):
    """float32 means started 30 standard deviations off: the one-pass bound fails in the
    first iterations only, which then take the exact second pass."""
    from bayesgmm.em import stream

    calls = []
    original = stream._second_pass
    monkeypatch.setattr(stream, "_second_pass", lambda *a: calls.append(1) or original(*a))
    X = data.astype(np.float32)
    means = np.array([[0.0] * 3, [1.6] * 3, [3.2] * 3], np.float32) + 30.0
    gm = GaussianMixture(3, means_init=means, tol=1e-4, max_iter=300)
    gm.fit(da.from_array(X, chunks=(2500, -1)))
    assert 1 <= len(calls) < gm.n_iter_
    assert np.isfinite(gm.lower_bounds_).all()


def test_initialisation_on_a_subset_above_init_rows(data):
    """Above ``init_rows`` rows the initialisation runs on a uniform subset; EM itself still
    uses every row: from the same start (the subset's initial parameters) it is the in-memory
    fit."""
    key = jax.random.key(0)
    X = da.from_array(data, chunks=(1000, -1))
    res, _ = fit_em_stream(key, X, 3, "tied", init_rows=500, tol=1e-8, max_iter=0)
    start = jax.tree_util.tree_map(lambda a: np.asarray(a)[0], res.params)
    full, _ = fit_em_stream(key, X, 3, "tied", init_rows=len(data), tol=1e-8, max_iter=0)
    # A subset of 500 rows gives other starting means than all 6000 rows.
    assert not np.allclose(np.asarray(full.params.means), np.asarray(res.params.means))
    got, _ = fit_em_stream(key, X, 3, "tied", params_init=start, tol=1e-8)
    ref = fit_em(key, data, 3, "tied", params_init=start, tol=1e-8)
    assert int(got.n_iter[0]) == int(ref.n_iter[0]) >= 10
    for a, b in zip(jax.tree_util.tree_leaves(ref.params), jax.tree_util.tree_leaves(got.params)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-9)


def test_hdf5_dataset(tmp_path, data):
    h5py = pytest.importorskip("h5py")  # in the test extra
    with h5py.File(tmp_path / "X.h5", "w") as f:
        f.create_dataset("X", data=data, chunks=(512, data.shape[1]))
    with h5py.File(tmp_path / "X.h5", "r") as f:
        dset = f["X"]
        assert is_out_of_core(dset)
        kw = dict(covariance_type="full", random_state=0, tol=1e-8)
        got = GaussianMixture(3, **kw).fit(dset)
        np.testing.assert_allclose(got.score_samples(dset), got.score_samples(data), rtol=1e-12)
    _assert_same_fit(GaussianMixture(3, **kw).fit(data), got, 1e-9)


def test_select_fast_on_dask_equals_in_memory(data):
    X = da.from_array(data, chunks=(2000, -1))
    kw = dict(n_components=[2, 3], covariance_types=["full", "diag"], strategy="fast")
    t_mem, best_mem = select(data, **kw)
    t_dask, best_dask = select(X, **kw)
    assert (best_dask.n_components, best_dask.covariance_type) == (
        best_mem.n_components,
        best_mem.covariance_type,
    )
    for a, b in zip(t_mem.rows, t_dask.rows):
        np.testing.assert_allclose(b["bic"], a["bic"], rtol=1e-9)
        np.testing.assert_allclose(b["icl"], a["icl"], rtol=1e-9)
    with pytest.raises(ValueError, match="strategy='robust' needs X in memory"):
        select(X, n_components=[2])


def test_schedulers_give_the_same_fit(data):
    import dask

    X = da.from_array(data, chunks=(1500, -1))
    fits = []
    for scheduler in ("threads", "synchronous"):
        with dask.config.set(scheduler=scheduler):
            fits.append(GaussianMixture(3, random_state=0, tol=1e-8).fit(X))
    _assert_same_fit(fits[0], fits[1], 1e-12)


@pytest.mark.slow
def test_local_cluster_two_worker_processes(data):
    """A LocalCluster with 2 worker processes: each chunk's statistics are computed on the
    worker holding the chunk (the task stream records which), and the fit is the in-memory
    one."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        X = client.persist(da.from_array(data, chunks=(1000, -1)))
        distributed.wait(X)
        with distributed.get_task_stream(client) as stream:
            got = GaussianMixture(3, random_state=0, tol=1e-8).fit(X)
            logp = got.score_samples(X).compute()
        workers = {t["worker"] for t in stream.data if "_apply_checked" in str(t["key"])}
        assert len(workers) == 2
    _assert_same_fit(GaussianMixture(3, random_state=0, tol=1e-8).fit(data), got, 1e-9)
    np.testing.assert_allclose(logp, got.score_samples(data), rtol=1e-12)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy as np, dask, dask.array as da
    from bayesgmm import GaussianMixture
    n, d = 3_000_000, 8
    # Generated lazily, chunk by chunk, every pass: 192 MB of float64 never held at once.
    X = da.random.default_rng(0).normal(size=(n, d), chunks=(100_000, d))
    small = np.random.default_rng(0).normal(size=(2000, d))
    with dask.config.set(scheduler="threads", num_workers=2):
        GaussianMixture(2, covariance_type="diag", max_iter=2, random_state=0).fit(
            X[:2000]
        )  # compile and warm up on the same chunk shapes
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        gm = GaussianMixture(2, covariance_type="diag", max_iter=3, tol=0, random_state=0).fit(X)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024, n * d * 8, gm.n_iter_)
    """
)


@pytest.mark.slow
def test_memory_is_bounded_by_the_chunk_not_the_data():
    """Peak RSS growth (``ru_maxrss``) of a fit on a lazily generated Dask array of 192 MB is
    well under the array's size: at most a third (chunks are 6.4 MB; the init subset of
    200000 rows is 12.8 MB; two threads hold a few chunks and their responsibilities)."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    ).stdout.split()
    growth, size, n_iter = int(out[0]), int(out[1]), int(out[2])
    assert n_iter == 3
    assert growth < size / 3, (growth, size)


def test_core_works_without_dask(memmap_file, data):
    """With Dask absent (its import blocked), a memmap fit still runs: Dask is an optional
    extra that only Dask input needs."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["dask"] = None
        import numpy as np
        from bayesgmm import GaussianMixture
        X = np.load({str(memmap_file)!r}, mmap_mode="r")
        gm = GaussianMixture(3, random_state=0, tol=1e-8).fit(X)
        print(gm.n_iter_, repr(gm.means_.tolist()))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split(" ", 1)
    ref = GaussianMixture(3, random_state=0, tol=1e-8).fit(data)
    assert int(out[0]) == ref.n_iter_
    np.testing.assert_allclose(np.array(eval(out[1])), ref.means_, rtol=1e-9)


def test_clear_errors_for_unsupported_inputs(data, memmap_file):
    X = da.from_array(data, chunks=(1000, -1))
    unknown = X[X[:, 0] > 0]  # boolean indexing: row chunk sizes unknown
    with pytest.raises(ValueError, match="unknown chunk sizes.*compute_chunk_sizes"):
        GaussianMixture(2).fit(unknown)
    with pytest.raises(ValueError, match="2-D array"):
        GaussianMixture(2).fit(X[:, 0])
    with pytest.raises(ValueError, match="Complex data not supported"):
        GaussianMixture(2).fit(X.astype(np.complex128))
    bad = data.copy()
    bad[4321, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity in 1 row\(s\) \(rows 4321\)"):
        GaussianMixture(2).fit(da.from_array(bad, chunks=(1000, -1)))
    with pytest.raises(ValueError, match="devices"):
        GaussianMixture(2, devices=2).fit(X)
    with pytest.raises(ValueError, match="resp_init is not accepted"):
        fit_em_stream(jax.random.key(0), X, 2, resp_init=np.ones((len(data), 2)) / 2)
    gm = GaussianMixture(2, random_state=0).fit(data)
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3"):
        gm.predict(X[:, :2])
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        GaussianMixture(2).fit(X, sample_weight=np.ones(5))
