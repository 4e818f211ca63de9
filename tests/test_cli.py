"""The ``bayesgmm`` command: subcommands, the demo, and errors a user can act on.

Most cases call ``bayesgmm.cli.main`` in-process (compiled JAX programs are reused across
tests); a handful run the real command as a subprocess, where every run pays JAX's import and
compilation again.
"""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from test_io import make_posterior

from bayesgmm import GaussianMixture, load
from bayesgmm.cli import DEMO_FILES, main


@pytest.fixture(autouse=True)
def _no_compile_cache(monkeypatch):
    # The command keeps a compilation cache in ~/.cache; tests must not write there.
    monkeypatch.setenv("BAYESGMM_JAX_CACHE", "0")


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(3)
    return np.concatenate([rng.normal(0, 1, (40, 2)), rng.normal(5, 0.7, (40, 2))])


@pytest.fixture(scope="module")
def files(tmp_path_factory, X):
    """A CSV with header, the same data as .npy, and a fitted EM model saved by the CLI."""
    d = tmp_path_factory.mktemp("cli")
    with open(d / "data.csv", "w") as f:
        f.write("height,width\n")
        for row in X:
            f.write(f"{float(row[0])!r},{float(row[1])!r}\n")
    np.save(d / "data.npy", X)
    assert (
        main(["fit", str(d / "data.csv"), "-k", "2", "--seed", "0", "-o", str(d / "m.bgmm")]) == 0
    )
    return d


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, *needles):
    assert code == 2
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("bayesgmm: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# --- subcommands in-process ------------------------------------------------------------------
def test_fit_em_matches_python_api(files, X, capsys):
    gm = load(files / "m.bgmm")
    ref = GaussianMixture(2, random_state=0).fit(X)
    np.testing.assert_array_equal(gm.means_, ref.means_)
    np.testing.assert_array_equal(gm.covariances_, ref.covariances_)
    assert list(gm.feature_names_in_) == ["height", "width"]
    # .npy input, and the printed summary carries the fit's numbers.
    code, out, _ = run(capsys, "fit", files / "data.npy", "-k", "2", "--seed", "0")
    assert code == 0
    assert f"BIC {ref.bic(X):.6g}" in out
    assert f"{ref.weights_[0]:.4f}" in out


def test_fit_map_and_covariance_type(files, X, capsys, tmp_path):
    out_path = tmp_path / "map.bgmm"
    code, out, _ = run(
        capsys, "fit", files / "data.csv", "-k", "2", "--method", "map",
        "--covariance-type", "diag", "--seed", "1", "--init", "k-means++", "-o", out_path,
    )  # fmt: skip
    assert code == 0 and "MAP-EM" in out
    gm = load(out_path)
    assert gm.init_params == "k-means++"
    ref = GaussianMixture(
        2, covariance_type="diag", prior="default", random_state=1, init_params="k-means++"
    ).fit(X)
    assert gm.prior == "default" and gm.covariance_type == "diag"
    np.testing.assert_array_equal(gm.means_, ref.means_)
    np.testing.assert_array_equal(gm.covariances_, ref.covariances_)


def test_predict_writes_labels_and_responsibilities(files, X, capsys, tmp_path):
    out_path = tmp_path / "pred.csv"
    code, out, _ = run(capsys, "predict", files / "m.bgmm", files / "data.csv", "-o", out_path)
    assert code == 0
    header, table = read_csv(out_path)
    assert header == ["label", "p0", "p1"]
    gm = load(files / "m.bgmm")
    np.testing.assert_array_equal(table[:, 0], gm.predict(X))
    np.testing.assert_array_equal(table[:, 1:], gm.predict_proba(X))  # repr round-trips floats
    # Without -o the CSV goes to standard output.
    code, out, _ = run(capsys, "predict", files / "m.bgmm", files / "data.npy")
    assert code == 0 and out.splitlines()[0] == "label,p0,p1" and len(out.splitlines()) == 81


def test_sample_from_em_model(files, capsys, tmp_path):
    out_path = tmp_path / "s.csv"
    code, _, _ = run(capsys, "sample", files / "m.bgmm", "-n", "25", "--seed", "4", "-o", out_path)
    assert code == 0
    header, table = read_csv(out_path)
    assert header == ["height", "width", "label"]
    Xs, ys = load(files / "m.bgmm").sample(25, random_state=4)
    np.testing.assert_array_equal(table[:, :2], Xs)
    np.testing.assert_array_equal(table[:, 2], ys)


def test_select_table_plot_and_best_model(files, X, capsys, tmp_path):
    from bayesgmm import select

    plot, best_path = tmp_path / "bic.png", tmp_path / "best.bgmm"
    code, out, _ = run(
        capsys, "select", files / "data.csv", "--k", "1-3", "--covariance-type", "spherical",
        "--init", "random_from_data", "--plot", plot, "-o", best_path,
    )  # fmt: skip
    assert code == 0
    table, best = select(
        X, n_components=[1, 2, 3], covariance_types=["spherical"], init_params="random_from_data"
    )
    assert f"best by BIC: {best.n_components} component(s)" in out
    for row in table:
        assert f"{row['bic']:.2f}" in out
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"
    np.testing.assert_array_equal(load(best_path).means_, best.means_)


def test_select_strategy_option(capsys, tmp_path):
    from bayesgmm import datasets

    # Old Faithful's tied/3: one k-means start to tol=1e-3 stops at -1140.55, the robust search
    # reaches -1126.32 (see tests/test_selection.py).
    path = tmp_path / "faithful.csv"
    np.savetxt(path, datasets.faithful(), delimiter=",", header="eruptions,waiting", comments="")
    grid = ("--k", "2-3", "--covariance-type", "tied")
    code, fast, _ = run(capsys, "select", path, *grid, "--strategy", "fast")
    assert code == 0 and "-1140.55" in fast and "-1126.32" not in fast
    code, robust, _ = run(capsys, "select", path, *grid)  # robust is the default
    assert code == 0 and "-1126.32" in robust
    code, _, err = run(capsys, "select", path, "--strategy", "slow")
    assert code != 0 and "--strategy" in err


def test_posterior_sample_predict_diagnose(X, capsys, tmp_path):
    post = make_posterior(X, "full", n_chains=2, n_draws=20)
    path = tmp_path / "post.nc"
    post.save(path)
    code, out, _ = run(capsys, "diagnose", path)
    assert code == 0
    assert "r_hat" in out and "ess_bulk" in out and "means[0, height]" in out
    assert f"divergences: {post.num_divergences}" in out

    code, _, _ = run(capsys, "sample", path, "-n", "30", "--seed", "5", "-o", tmp_path / "s.csv")
    assert code == 0
    header, table = read_csv(tmp_path / "s.csv")
    assert header == ["height", "width", "label"]
    np.testing.assert_array_equal(table[:, :2], post.sample(30, seed=5)[0])

    np.savetxt(tmp_path / "x.csv", X, delimiter=";")
    code, out, _ = run(capsys, "predict", path, tmp_path / "x.csv")
    assert code == 0
    rows = np.array([r.split(",") for r in out.splitlines()[1:]], dtype=float)
    np.testing.assert_allclose(rows[:, 1:], post.predict_proba(X), rtol=0, atol=1e-15)

    code, _, err = run(capsys, "diagnose", tmp_path / ".." / tmp_path.name / "post.nc", "--x")
    assert_user_error(code, err, "unrecognized arguments: --x")


def test_help_for_every_subcommand(capsys):
    for command in ("demo", "fit", "select", "sample", "predict", "diagnose"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0
        assert out.startswith("usage: bayesgmm " + command)
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "diagnose" in out


# --- errors a user can act on ------------------------------------------------------------------
def test_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "fit", tmp_path / "nope.csv", "-k", "2")
    assert_user_error(code, err, "nope.csv does not exist")
    code, _, err = run(capsys, "sample", tmp_path / "nope.bgmm", "-n", "3")
    assert_user_error(code, err, "does not exist")


def test_non_numeric_column(capsys, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("name,x\nann,1\nbob,2\ncy,3\n")
    code, _, err = run(capsys, "fit", path, "-k", "1")
    assert_user_error(code, err, "column 'name'", "not numeric", "--columns")


def test_nan_rows_named_and_drop_nan(capsys, tmp_path, X):
    path = tmp_path / "d.csv"
    lines = ["a,b"] + [f"{float(x)!r},{float(y)!r}" for x, y in X[:20]]
    lines[4] = "nan,1.0"
    lines[9] = "2.0,"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run(capsys, "fit", path, "-k", "1")
    assert_user_error(code, err, "line 5, line 10", "--drop-nan")
    code, out, _ = run(capsys, "fit", path, "-k", "1", "--drop-nan")
    assert code == 0 and "dropped 2 row(s)" in out and "18 rows" in out


def test_too_few_rows_for_k(capsys, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,2\n3,4\n5,7\n")
    code, _, err = run(capsys, "fit", path, "-k", "5")
    assert_user_error(code, err, "3 rows", "5 components")


def test_feature_mismatch(files, capsys, tmp_path):
    path = tmp_path / "three.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n")
    code, _, err = run(capsys, "predict", files / "m.bgmm", path)
    assert_user_error(code, err, "2 features", "3 columns")


def test_unknown_option_and_bad_values(capsys, files):
    code, _, err = run(capsys, "fit", files / "data.csv", "-k", "2", "--frobnicate")
    assert_user_error(code, err, "unrecognized arguments: --frobnicate")
    code, _, err = run(capsys, "fit", files / "data.csv", "-k", "2", "--covariance-type", "round")
    assert_user_error(code, err, "invalid choice: 'round'")
    code, _, err = run(capsys, "select", files / "data.csv", "--k", "one-two")
    assert_user_error(code, err, "--k must look like")
    code, _, err = run(capsys, "conquer")
    assert_user_error(code, err, "invalid choice")
    code, _, err = run(capsys)
    assert_user_error(code, err, "required")


def test_existing_output_refused_without_force(files, capsys, tmp_path):
    out_path = tmp_path / "m.bgmm"
    out_path.write_bytes(b"keep me")
    code, _, err = run(capsys, "fit", files / "data.csv", "-k", "1", "-o", out_path)
    assert_user_error(code, err, "already exists", "--force")
    assert out_path.read_bytes() == b"keep me"
    code, _, _ = run(capsys, "fit", files / "data.csv", "-k", "1", "-o", out_path, "--force")
    assert code == 0 and load(out_path).n_components == 1


def test_damaged_model_and_wrong_kind(files, capsys, tmp_path):
    path = tmp_path / "m.bgmm"
    raw = (files / "m.bgmm").read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    code, _, err = run(capsys, "sample", path, "-n", "3")
    assert_user_error(code, err, "damaged or truncated")
    code, _, err = run(capsys, "diagnose", files / "m.bgmm")
    assert_user_error(code, err, "needs a posterior")


def test_debug_shows_traceback(capsys, tmp_path):
    code, _, err = run(capsys, "fit", tmp_path / "nope.csv", "-k", "2", "--debug")
    assert code == 2
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("bayesgmm: error:")


# --- real subprocesses ---------------------------------------------------------------------------
def bayesgmm_cmd(*argv, cwd):
    env = dict(os.environ, BAYESGMM_JAX_CACHE="0", JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-m", "bayesgmm", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def test_subprocess_fit_predict_sample_select(files, X, tmp_path):
    r = bayesgmm_cmd("fit", files / "data.csv", "-k", "2", "-o", "m.bgmm", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "converged" in r.stdout
    np.testing.assert_array_equal(
        load(tmp_path / "m.bgmm").means_, GaussianMixture(2, random_state=0).fit(X).means_
    )
    r = bayesgmm_cmd("predict", "m.bgmm", files / "data.npy", "-o", "p.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _, table = read_csv(tmp_path / "p.csv")
    np.testing.assert_array_equal(table[:, 0], load(tmp_path / "m.bgmm").predict(X))
    r = bayesgmm_cmd("sample", "m.bgmm", "-n", "10", "--seed", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "height,width,label" and len(lines) == 11
    r = bayesgmm_cmd("select", "m.bgmm", cwd=tmp_path)  # a model is not data
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_subprocess_errors_are_one_line(tmp_path):
    for argv in (["fit", "missing.csv", "-k", "2"], ["fit", "--bogus"], ["diagnose", "x.nc"]):
        r = bayesgmm_cmd(*argv, cwd=tmp_path)
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("bayesgmm: error: ") and "Traceback" not in r.stderr


def test_subprocess_demo_quick_produces_every_file(tmp_path):
    # The README's main job, end to end at reduced size (the reason this test takes ~30 s).
    r = bayesgmm_cmd("demo", "--quick", "--out", "demo", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "demo"
    assert sorted(os.listdir(out)) == sorted(DEMO_FILES)
    for name in DEMO_FILES:
        assert (out / name).stat().st_size > 100, name
    for name in ("bic.png", "ellipses.png", "posterior_ellipses.png", "trace.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    em, post = load(out / "em_model.bgmm"), load(out / "posterior.nc")
    assert post.relabeled and post.n_components == em.n_components
    header, data = read_csv(out / "data.csv")
    assert header == ["x", "y"] and data.shape == (150, 2)
    header, synth = read_csv(out / "synthetic.csv")
    assert header == ["x", "y", "label"] and synth.shape == (150, 3)
    assert set(np.unique(synth[:, 2])) <= set(range(em.n_components))
    # The comparison table: one row per weight and mean, with the EM value it printed.
    for j in range(em.n_components):
        assert f"weight[{j}]" in r.stdout and f"{em.weights_[j]:.4f}" in r.stdout
        assert f"mean[{j}, x]" in r.stdout
    assert "R-hat" in r.stdout and "ESS" in r.stdout and "[6/6]" in r.stdout
    # A second run refuses to replace the files; --force replaces them.
    before = (out / "em_model.bgmm").read_bytes()
    r = bayesgmm_cmd("demo", "--quick", "--out", "demo", cwd=tmp_path)
    assert r.returncode == 2 and "--force" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert (out / "em_model.bgmm").read_bytes() == before


def test_fit_nuts_saves_a_relabeled_posterior(files, X, capsys, tmp_path):
    # Few draws: this checks the command's plumbing, not the sampler (tests of
    # fit_posterior cover that).
    out_path = tmp_path / "post.nc"
    code, out, _ = run(
        capsys, "fit", files / "data.csv", "-k", "2", "--method", "nuts", "--num-warmup", "30",
        "--num-samples", "30", "--num-chains", "2", "--seed", "3", "-o", out_path,
    )  # fmt: skip
    assert code == 0
    post = load(out_path)
    assert post.relabeled and post.num_chains == 2 and post.num_draws == 30
    assert post.feature_names == ["height", "width"]
    np.testing.assert_array_equal(post.X, X)
    means = np.asarray(post.draws.means).mean(axis=(0, 1))
    assert f"{means[0, 0]:.4f}" in out and "90% interval" in out and "divergences" in out
    # The two well-separated clusters (centres 0 and 5) are found: a loose check that the
    # printed numbers are posterior means, not something else.
    np.testing.assert_allclose(np.sort(means[:, 0]), [0.0, 5.0], atol=0.6)


@pytest.mark.extended  # the same command in-process: test_posterior_sample_predict_diagnose
def test_subprocess_diagnose(X, tmp_path):
    post = make_posterior(X, "tied", n_chains=2, n_draws=20)
    post.save(tmp_path / "post.nc")
    r = bayesgmm_cmd("diagnose", "post.nc", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "r_hat" in r.stdout and "weights[1]" in r.stdout
    assert f"divergences: {post.num_divergences}" in r.stdout
