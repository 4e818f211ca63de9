"""Saved models (bayesgmm.io): round trips, refusal to overwrite, damaged and foreign files."""

import json
import os
import zipfile

import numpy as np
import pytest

import bayesgmm
from bayesgmm import GaussianMixture, Prior, load, save
from bayesgmm.io import FormatError, atomic_write, file_kind, read_data

# Random starts from the data compile much faster than k-means and are all the file format
# tests need.
FAST = {"init_params": "random_from_data", "n_init": 2}

FITTED_ARRAYS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    return np.concatenate([rng.normal(0, 1, (60, 2)), rng.normal(4, 0.5, (60, 2))])


def assert_same_estimator(a, b, X):
    for name in FITTED_ARRAYS + ("lower_bounds_",):
        got, want = getattr(b, name), getattr(a, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    for name in ("n_iter_", "converged_", "lower_bound_", "n_features_in_"):
        assert getattr(b, name) == getattr(a, name), name
    assert a.get_params().keys() == b.get_params().keys()
    for key in ("n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init"):
        assert getattr(b, key) == getattr(a, key), key
    # Identical parameters give identical predictions, bit for bit.
    np.testing.assert_array_equal(b.predict_proba(X), a.predict_proba(X))
    np.testing.assert_array_equal(b.score_samples(X), a.score_samples(X))
    np.testing.assert_array_equal(b.sample(5, random_state=3)[0], a.sample(5, random_state=3)[0])


@pytest.mark.parametrize("prior", [None, "default"], ids=["em", "map-em"])
def test_round_trip_every_covariance_type(tmp_path, data, covariance_type, prior):
    gm = GaussianMixture(
        2, covariance_type=covariance_type, prior=prior, random_state=0, tol=1e-5, **FAST
    ).fit(data)
    path = tmp_path / "model.bgmm"
    gm.save(path)
    loaded = load(path)
    assert isinstance(loaded, GaussianMixture)
    assert_same_estimator(gm, loaded, data)
    assert loaded.prior == prior
    if prior is None:
        assert loaded.prior_ is None
    else:
        for field in Prior._fields:
            np.testing.assert_array_equal(
                np.asarray(getattr(loaded.prior_, field)), np.asarray(getattr(gm.prior_, field))
            )
        # The reloaded estimator refits to the same MAP solution.
        refit = loaded.fit(data)
        np.testing.assert_allclose(refit.means_, gm.means_, rtol=1e-12)


def test_round_trip_prior_object_init_arrays_and_float32(tmp_path, data):
    X = data.astype(np.float32)
    prior = Prior.default(X, 2, "diag", weight_concentration=2.0)
    gm = GaussianMixture(
        2,
        covariance_type="diag",
        prior=prior,
        weights_init=[0.5, 0.5],
        means_init=[[0.0, 0.0], [4.0, 4.0]],
        precisions_init=np.ones((2, 2)),
        random_state=7,
    ).fit(X)
    assert gm.means_.dtype == np.float32
    save(gm, tmp_path / "m.bgmm")
    loaded = load(tmp_path / "m.bgmm")
    assert_same_estimator(gm, loaded, X)
    assert isinstance(loaded.prior, Prior)
    np.testing.assert_array_equal(np.asarray(loaded.prior.weight_concentration), [2.0, 2.0])
    np.testing.assert_array_equal(loaded.means_init, gm.means_init)
    assert loaded.random_state == 7


def test_unfitted_and_wrong_objects_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        GaussianMixture(2).save(tmp_path / "m.bgmm")
    with pytest.raises(TypeError, match="GaussianMixture or a Posterior"):
        save({"weights": 1}, tmp_path / "m.bgmm")
    assert not (tmp_path / "m.bgmm").exists()


def test_existing_file_is_never_overwritten_unasked(tmp_path, data):
    gm1 = GaussianMixture(1, random_state=0, **FAST).fit(data)
    gm2 = GaussianMixture(2, random_state=0, **FAST).fit(data)
    path = tmp_path / "m.bgmm"
    path.write_bytes(b"precious user data")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        gm1.save(path)
    assert path.read_bytes() == b"precious user data"
    gm1.save(path, overwrite=True)
    assert load(path).n_components == 1
    with pytest.raises(FileExistsError):
        gm2.save(path)
    assert load(path).n_components == 1
    gm2.save(path, overwrite=True)
    assert load(path).n_components == 2
    # No temporary files are left behind.
    assert sorted(os.listdir(tmp_path)) == ["m.bgmm"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def crash(f):
        f.write(b"half of the new cont")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, crash, overwrite=True)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_missing_directory_and_directory_destination(tmp_path, data):
    gm = GaussianMixture(1, random_state=0, **FAST).fit(data)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gm.save(tmp_path / "nope" / "m.bgmm")
    with pytest.raises(IsADirectoryError):
        gm.save(tmp_path)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.9, 0.99])
def test_truncated_model_is_refused(tmp_path, data, fraction):
    path = tmp_path / "m.bgmm"
    GaussianMixture(2, random_state=0, **FAST).fit(data).save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(FormatError, match="empty|damaged|truncated"):
        load(path)


def test_corrupted_member_is_refused(tmp_path, data):
    path = tmp_path / "m.bgmm"
    GaussianMixture(2, random_state=0, **FAST).fit(data).save(path)
    raw = bytearray(path.read_bytes())
    # Flip bytes inside the compressed arrays member: the zip CRC check must catch it.
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("arrays.npz")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 10, start + 40):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError):
        load(path)


def _rewrite_meta(path, change):
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("model.json"))
        arrays = zf.read("arrays.npz")
    change(meta)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.json", json.dumps(meta))
        zf.writestr("arrays.npz", arrays)


def test_newer_version_and_foreign_files_are_refused(tmp_path, data):
    path = tmp_path / "m.bgmm"
    GaussianMixture(2, random_state=0, **FAST).fit(data).save(path)
    _rewrite_meta(path, lambda m: m.update(format_version=99))
    with pytest.raises(FormatError, match="version 99.*upgrade bayesgmm"):
        load(path)
    _rewrite_meta(path, lambda m: m.update(format_version=1, format="something-else"))
    with pytest.raises(FormatError, match="not a bayesgmm-model"):
        load(path)

    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(FormatError, match="not a bayesgmm model"):
        load(other)
    text = tmp_path / "data.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(FormatError, match="not a bayesgmm file"):
        load(text)
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(FormatError, match="not a bayesgmm file"):
        load(tmp_path / "x.npy")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.bgmm")
    assert file_kind(path) == "model"


def test_saved_file_is_the_documented_format(tmp_path, data):
    path = tmp_path / "m.bgmm"
    gm = GaussianMixture(2, covariance_type="tied", prior="default", random_state=0, **FAST).fit(
        data
    )
    gm.save(path)
    with zipfile.ZipFile(path) as zf:
        assert set(zf.namelist()) == {"model.json", "arrays.npz"}
        meta = json.loads(zf.read("model.json"))
    assert meta["format"] == "bayesgmm-model" and meta["format_version"] == 1
    assert meta["bayesgmm_version"] == bayesgmm.__version__
    assert meta["params"]["covariance_type"] == "tied"
    assert meta["params"]["prior"] == "default"
    assert "prior_scale" in meta["arrays"] and "weights" in meta["arrays"]
    # Readable with plain NumPy, no pickles.
    with zipfile.ZipFile(path) as zf, zf.open("arrays.npz") as f:
        import io

        npz = np.load(io.BytesIO(f.read()), allow_pickle=False)
        np.testing.assert_array_equal(npz["covariances"], gm.covariances_)


# --- read_data -------------------------------------------------------------------------------
def test_read_csv_header_and_delimiters(tmp_path):
    X = np.random.default_rng(0).normal(size=(7, 3))
    for delim, header in [(",", True), (";", False), ("\t", True), (" ", False), ("|", True)]:
        path = tmp_path / "d.txt"
        lines = (["a" + delim + "b" + delim + "c"] if header else []) + [
            delim.join(repr(float(v)) for v in row) for row in X
        ]
        path.write_text("\n".join(lines) + "\n")
        got, names, info = read_data(path)
        np.testing.assert_array_equal(got, X)
        assert names == (["a", "b", "c"] if header else ["x0", "x1", "x2"])
        assert info["dropped"] == []


def test_read_single_column_and_columns_option(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("1.5\n2.5\n-3\n")
    X, names, _ = read_data(path)
    assert X.shape == (3, 1) and names == ["x0"]
    path = tmp_path / "mixed.csv"
    path.write_text("id,species,x,y\n1,cat,0.5,1\n2,dog,1.5,2\n")
    X, names, _ = read_data(path, columns="x,y")
    np.testing.assert_array_equal(X, [[0.5, 1], [1.5, 2]])
    assert names == ["x", "y"]
    X, names, _ = read_data(path, columns=[3, 0])
    np.testing.assert_array_equal(X, [[1, 1], [2, 2]])
    with pytest.raises(ValueError, match="column 'species' .* not numeric .*line 2"):
        read_data(path)
    with pytest.raises(ValueError, match="no column 'z'"):
        read_data(path, columns="z")
    with pytest.raises(ValueError, match="out of range"):
        read_data(path, columns="9")


def test_read_nan_rows_named_and_dropped(tmp_path):
    path = tmp_path / "nan.csv"
    path.write_text("x,y\n1,2\n3,\n4,5\nNA,6\n7,8\n")
    with pytest.raises(ValueError, match=r"2 row\(s\) \(line 3, line 5\).*--drop-nan"):
        read_data(path)
    X, _, info = read_data(path, drop_nan=True)
    np.testing.assert_array_equal(X, [[1, 2], [4, 5], [7, 8]])
    assert info["dropped"] == ["line 3", "line 5"]


CSV_CASES = {
    "header": "a,b\n1,2\n3.5,-4e3\n",
    "no header, spaces": "1 2\n  3   4 \n",
    "comments and blank lines": "# made by hand\n\nx;y\n# a note\n1;2\n\n3;4\n   \n",
    "comments, empty lines": "# made by hand\n\nx;y\n# a note\n1;2\n\n3;4\n",
    "crlf, BOM, tab": "\ufeffa\tb\r\n1\t2\r\n3\t4\r\n",
    "quoted": '"a","b"\n"1","2"\n3,"4"\n',
    "spaces around fields": "a , b\n 1 , 2 \n3,4\n",
    "nan and inf": "a,b\n1,nan\n2,3\ninf,4\n",
    "missing values": "a|b\n1|\n2|3\nNA|4\n",
    "one column": "v\n1\n2\n",
    "inline comments": "a,b  # the header\n1,2 # first\n3,4\n",
    "pipes, header only numbers after": "p|q|r\n1|2|3\n",
}


@pytest.mark.parametrize("name", sorted(CSV_CASES))
def test_fast_csv_reader_equals_the_field_by_field_reader(tmp_path, monkeypatch, name):
    # The C parser is a fast path only: every file must read exactly as the field-by-field
    # reader reads it (values, names, dropped rows and their line numbers).
    from bayesgmm import io as bio

    path = tmp_path / "d.csv"
    path.write_bytes(CSV_CASES[name].encode("utf-8"))
    fast = read_data(path, drop_nan=True)
    used_fast = bio._read_csv_fast(path, *bio._sniff(path)) is not None
    # The fast path is taken where it can be: not with missing values, nor where a line holds
    # only spaces (the C parser sees a row of one empty field there).
    assert used_fast == (name not in ("missing values", "comments and blank lines"))
    with monkeypatch.context() as m:
        m.setattr(bio, "_read_csv_fast", lambda *a: None)
        slow = read_data(path, drop_nan=True)
    np.testing.assert_array_equal(fast[0], slow[0])
    assert fast[1:] == slow[1:]


CSV_ERRORS = [
    ("# c\nx,y\n1,2\n3,4,5\n", "line 4 has 3 fields where 2 were expected"),
    ("x,y\n1,2\n3,oops\n", "column 'y' .* not numeric .*line 3: 'oops'"),
    ("# only a comment\n\n", "holds no data rows"),
    ("x,y\n", "has a header but no data rows"),
    # line numbers count comments and blank lines
    ("# c\nx,y\n\n1,2\nnan,3\n", r"1 row\(s\) \(line 5\)"),
]


@pytest.mark.parametrize(("text", "message"), CSV_ERRORS)
def test_fast_csv_reader_keeps_the_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_data(path)


def test_read_npy_npz(tmp_path):
    X = np.arange(12.0).reshape(6, 2)
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    got, names, _ = read_data(tmp_path / "x.npy")
    assert got.dtype == np.float32 and names == ["x0", "x1"]
    np.testing.assert_array_equal(got, X)
    np.savez(tmp_path / "one.npz", data=X)
    np.testing.assert_array_equal(read_data(tmp_path / "one.npz")[0], X)
    np.savez(tmp_path / "two.npz", X=X, y=np.zeros(6))
    np.testing.assert_array_equal(read_data(tmp_path / "two.npz", columns="1")[0], X[:, 1:])
    np.savez(tmp_path / "amb.npz", a=X, b=X)
    with pytest.raises(ValueError, match="name the data array 'X'"):
        read_data(tmp_path / "amb.npz")
    with pytest.raises(FileNotFoundError):
        read_data(tmp_path / "nothing.csv")


# --- posteriors ------------------------------------------------------------------------------
def make_posterior(X, covariance_type, *, n_chains=2, n_draws=6, seed=0):
    """A Posterior built from jittered copies of a MAP-EM fit (no sampling: the file format,
    not NUTS, is under test here)."""
    from bayesgmm import GMMParams, Posterior

    gm = GaussianMixture(
        2, covariance_type=covariance_type, prior="default", random_state=0, **FAST
    )
    gm.fit(X)
    rng = np.random.default_rng(seed)
    shape = (n_chains, n_draws)
    w = rng.dirichlet(50 * gm.weights_, size=shape)
    m = gm.means_ + 0.05 * rng.standard_normal(shape + gm.means_.shape)
    c = gm.covariances_ * rng.uniform(0.9, 1.1, size=shape + (1,) * gm.covariances_.ndim)
    draws = GMMParams(w, m, c, covariance_type)
    stats = {
        "diverging": rng.uniform(size=shape) < 0.1,
        "energy": rng.normal(size=shape),
        "tree_depth": rng.integers(1, 5, size=shape),
    }
    return Posterior(
        draws,
        X=X,
        prior=gm.prior_,
        map_params=gm.params_,
        map_estimator=gm,
        sample_stats=stats,
        feature_names=["height", "width"],
    )


def test_posterior_round_trip_every_covariance_type(tmp_path, data, covariance_type):
    post = make_posterior(data, covariance_type)
    path = tmp_path / "post.nc"
    post.save(path)
    assert file_kind(path) == "posterior"
    loaded = load(path)
    assert type(loaded) is type(post)
    assert loaded.covariance_type == covariance_type
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(
            np.asarray(getattr(loaded.draws, name)), np.asarray(getattr(post.draws, name))
        )
        np.testing.assert_array_equal(
            np.asarray(getattr(loaded.map_params, name)),
            np.asarray(getattr(post.map_params, name)),
        )
    for field in Prior._fields:
        np.testing.assert_array_equal(
            np.asarray(getattr(loaded.prior, field)), np.asarray(getattr(post.prior, field))
        )
    np.testing.assert_array_equal(loaded.X, post.X)
    assert loaded.num_divergences == post.num_divergences
    assert loaded.feature_names == ["height", "width"]
    np.testing.assert_array_equal(loaded.predict_proba(data), post.predict_proba(data))
    np.testing.assert_array_equal(loaded.score_samples(data), post.score_samples(data))
    np.testing.assert_array_equal(loaded.sample(7, seed=2)[0], post.sample(7, seed=2)[0])
    # The MAP start's diagnostics survive the file, and its estimator is rebuilt from them.
    assert loaded.map_diagnostics == post.map_diagnostics
    assert loaded.map_diagnostics["n_init"] == post.map_estimator.n_init
    est = loaded.map_estimator
    assert est.lower_bound_ == post.map_estimator.lower_bound_
    assert est.n_iter_ == post.map_estimator.n_iter_
    np.testing.assert_array_equal(est.predict(data), post.map_estimator.predict(data))


def test_posterior_file_is_plain_arviz_netcdf(tmp_path, data):
    import arviz as az

    post = make_posterior(data, "diag")
    path = tmp_path / "post.nc"
    save(post, path)
    idata = az.from_netcdf(path)
    attrs = idata.posterior.attrs
    assert attrs["bayesgmm_format"] == "bayesgmm-posterior"
    assert int(attrs["bayesgmm_format_version"]) == 1
    assert attrs["bayesgmm_version"] == bayesgmm.__version__
    assert idata.posterior["means"].dims == ("chain", "draw", "component", "feature")
    # Saving must not change the Posterior's own InferenceData attributes.
    assert "bayesgmm_format" not in post.to_inference_data().posterior.attrs


def test_posterior_overwrite_truncation_newer_and_foreign(tmp_path, data):
    import arviz as az

    post = make_posterior(data, "spherical")
    path = tmp_path / "post.nc"
    post.save(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_posterior(data, "spherical", seed=1).save(path)
    assert path.read_bytes() == before
    make_posterior(data, "spherical", seed=1).save(path, overwrite=True)
    assert path.read_bytes() != before
    assert sorted(os.listdir(tmp_path)) == ["post.nc"]

    trunc = tmp_path / "trunc.nc"
    trunc.write_bytes(before[: len(before) // 2])
    with pytest.raises(FormatError, match="damaged or truncated"):
        load(trunc)

    idata = post.to_inference_data()
    idata.posterior.attrs.update(bayesgmm_format="bayesgmm-posterior", bayesgmm_format_version=7)
    newer = tmp_path / "newer.nc"
    idata.to_netcdf(newer)
    with pytest.raises(FormatError, match="version 7.*upgrade"):
        load(newer)

    foreign = tmp_path / "foreign.nc"
    az.from_dict(posterior={"mu": np.zeros((2, 5))}).to_netcdf(foreign)
    with pytest.raises(FormatError, match="not a bayesgmm-posterior"):
        load(foreign)
