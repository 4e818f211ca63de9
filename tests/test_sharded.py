"""EM with rows sharded over several devices (``devices=``) equals the one-device fit.

Several devices exist only when requested before JAX starts, so the fits run in
subprocesses with two host CPU devices (tests/sharded_worker.py); this file asserts on what
they report. Every case crosses a size threshold of the blocking: one block split in two,
several centred blocks evened out over the devices, expanded blocks with a padded last one,
a device whose block is all padding, and the refused-step hand-back between the kernels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from bayesgmm import GaussianMixture, em
from bayesgmm._devices import resolve_devices, row_mesh

WORKER = Path(__file__).with_name("sharded_worker.py")


def _run_worker(group: str) -> list[dict]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, str(WORKER), group], capture_output=True, text=True, env=env, timeout=900
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


# Only the summation order differs between one and two devices: float64 results agree to a
# few hundred ulps after 25 iterations (measured: at most 1.3e-12, the refused-step cases,
# whose centred and expanded iterations alternate); the issue asks for rtol 1e-9. In float32
# the same reordering moves results by a few float32 ulps (measured 2.3e-7); 1e-5 leaves
# room for EM's amplification over 25 iterations while a wrong reduction (a share counted
# twice or not at all) moves them by percent.
RTOL = {"float64": 1e-9, "float32": 1e-5}


@pytest.fixture(scope="module", params=["kernels", "options"])
def reports(request):
    return request.param, _run_worker(request.param)


def test_two_devices_equal_one(reports):
    group, cases = reports
    fits = [c for c in cases if "rel_params" in c]
    assert len(fits) == {"kernels": 13, "options": 11}[group]
    for c in fits:
        assert c["rel_params"] <= RTOL[c["dtype"]], c
        assert c["rel_lower_bounds"] <= RTOL[c["dtype"]], c
        assert c["n_iter"][0] == c["n_iter"][1], c
        if c["modes"]:
            # The one-device run is unsharded; every program of the two-device run is sharded.
            assert all(not m.endswith("/sharded") for m in c["modes"]["1"]), c
            assert c["modes"]["2"] and all(m.endswith("/sharded") for m in c["modes"]["2"]), c
    if group == "kernels":
        names = {c["case"]: c for c in fits}
        for ct in ("full", "tied", "diag", "spherical"):
            # The hand-back between the kernel families ran sharded.
            assert "resume/sharded" in names[f"resume/{ct}/5001"]["modes"]["2"]
            assert names[f"expanded/{ct}/5001"]["modes"]["2"] == ["expanded/sharded"]
    else:
        (default,) = [c for c in cases if c["case"] == "default"]
        assert default == {"case": "default", "large": 2, "small": True}


@pytest.mark.parametrize(
    "group", ["nuts", pytest.param("nuts-extended", marks=pytest.mark.extended)]
)
def test_sharded_likelihood_is_the_one_device_posterior(group):
    cases = {c["case"]: c for c in _run_worker(group)}
    for name in ("nuts/full", "nuts/diag+weights", "nuts/spherical+missing"):
        # The potential energy and its gradient: the same numbers up to summation order
        # (measured at most 1.8e-13 relative).
        assert cases[f"{name}/energy"]["rel_energy"] <= 1e-10, cases[f"{name}/energy"]
    runs = [c for c in cases.values() if c["case"].endswith("/draws")]
    assert len(runs) == (1 if group == "nuts" else 3)
    for run in runs:
        for (m1, s1), (m2, s2) in zip(run["moments"]["1"], run["moments"]["2"], strict=True):
            m1, s1, m2, s2 = map(np.asarray, (m1, s1, m2, s2))
            pooled = np.sqrt((s1**2 + s2**2) / 2) + 1e-12
            # 2 chains x 200 draws each; NUTS draws of these well-identified posteriors have
            # an effective sample size of at least ~100 per run, so the difference of two
            # independent means has sd <= pooled * sqrt(2 / 100) = 0.14 pooled: 0.6 is over 4
            # sd, while a likelihood counted on one device's rows only (half the data) moves
            # the means by several posterior sd and the sds by sqrt(2).
            assert np.all(np.abs(m1 - m2) <= 0.6 * pooled), (run["case"], m1, m2, pooled)
            assert np.all((s2 > 0.7 * s1) & (s2 < 1.4 * s1)), (run["case"], s1, s2)
    assert cases["nuts-default"] == {
        "case": "nuts-default",
        "large": 2,
        "parallel": True,
        "small": True,
    }


def test_parallel_chains_and_sharded_likelihood_are_exclusive():
    from bayesgmm.sampler import resolve_likelihood_mesh

    assert resolve_likelihood_mesh(1, "parallel", 100_000, 3, 5) is None  # one device: fine
    with pytest.raises(ValueError, match="devices must be between"):
        resolve_likelihood_mesh(2, "sequential", 100_000, 3, 5)  # one device in this process


def test_one_device_is_the_unsharded_program():
    # This process has one device: devices=None and devices=1 both mean no mesh.
    assert em.driver.em_mesh(None, 100_000, 10, 10) is None
    assert row_mesh(resolve_devices(1)) is None
    assert resolve_devices(jax.local_devices()[0]) == (jax.local_devices()[0],)


@pytest.mark.parametrize(
    "devices, error, match",
    [
        (0, ValueError, "devices must be between 1 and"),
        (5, ValueError, "devices must be between 1 and"),
        ("cpu", TypeError, "devices must be None, a number"),
        ([], TypeError, "devices must be None, a number"),
        ([1, 2], TypeError, "jax.Device"),
        (True, TypeError, "devices must be None"),
        (2.0, TypeError, "devices must be None"),
    ],
)
def test_bad_devices_are_refused_before_fitting(devices, error, match):
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(error, match=match):
        em.fit_em(jax.random.key(0), X, 2, devices=devices)
    with pytest.raises(error, match=match):
        GaussianMixture(2, devices=devices).fit(X)


def test_repeated_device_is_refused():
    dev = jax.local_devices()[0]
    with pytest.raises(ValueError, match="devices must be distinct"):
        resolve_devices([dev, dev])


def test_devices_is_a_parameter_that_saves(tmp_path):
    from bayesgmm import load, save

    X = np.random.default_rng(0).normal(size=(80, 2))
    gm = GaussianMixture(2, random_state=0, devices=1).fit(X)
    assert gm.get_params()["devices"] == 1
    save(gm, tmp_path / "m.bgmm")
    assert load(tmp_path / "m.bgmm").devices == 1
    ref = GaussianMixture(2, random_state=0).fit(X)
    np.testing.assert_array_equal(gm.means_, ref.means_)  # one device: the same program
