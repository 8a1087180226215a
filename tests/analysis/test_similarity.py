"""SVCCA, PWCCA and linear CKA: an independent computation, identities, invariances, bad input."""

import numpy as np
import pytest
import torch

from medapt.analysis import METHODS, DegenerateRepresentationError, compare, linear_cka, pwcca, svcca
from medapt.errors import ConfigError, ShapeMismatchError, UnknownNameError


def _pair(n=400, da=12, db=9, seed=0):
    """Two related representations with decaying variances (so the 99% cut keeps fewer dims)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, da)) * np.geomspace(1.0, 0.01, da)
    y = np.tanh(x @ rng.normal(size=(da, db))) + 0.3 * rng.normal(size=(n, db)) * np.geomspace(1.0, 0.05, db)
    return x + 3.0, y - 1.0  # non-zero means: centring is part of the measure


def _orthogonal(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


# --------------------------------------------------------------------------- independent computation


def _reference(x, y, threshold):
    """SVCCA/PWCCA written differently from the library: the SVD step by eigen-decomposition of
    the covariance, CCA by the whitened cross-covariance Σaa^-½ Σab Σbb^-½ and its SVD."""

    def reduce(z):
        zc = z - z.mean(axis=0)
        lam, v = np.linalg.eigh(np.cov(zc, rowvar=False))
        lam, v = lam[::-1].clip(min=0), v[:, ::-1]
        k = len(lam) if threshold is None else int(np.argmax(np.cumsum(lam) / lam.sum() >= threshold)) + 1
        return zc, zc @ v[:, :k]

    def inv_sqrt(s):
        w, u = np.linalg.eigh(s)
        return u @ np.diag(w ** -0.5) @ u.T

    (xc, a), (yc, b) = reduce(x), reduce(y)
    c = np.cov(np.hstack([a, b]), rowvar=False)
    ka = a.shape[1]
    wa, wb = inv_sqrt(c[:ka, :ka]), inv_sqrt(c[ka:, ka:])
    u, rho, vt = np.linalg.svd(wa @ c[:ka, ka:] @ wb)
    m = len(rho)
    if a.shape[1] <= b.shape[1]:
        h, z = a @ wa @ u[:, :m], xc
    else:
        h, z = b @ wb @ vt.T[:, :m], yc
    h = h / np.linalg.norm(h, axis=0)
    alpha = np.abs(h.T @ z).sum(axis=1)
    return rho, a.shape[1], b.shape[1], float(rho.mean()), float(alpha @ rho / alpha.sum())


@pytest.mark.parametrize("threshold", [0.99, 0.9, None])
def test_svcca_and_pwcca_match_a_whitened_cross_covariance_computation(threshold):
    x, y = _pair()
    rho, ka, kb, sv, pw = _reference(x, y, threshold)
    s = svcca(x, y, threshold=threshold)
    p = pwcca(x, y, threshold=threshold)
    assert (s.dims_a, s.dims_b) == (ka, kb) and s.n == 400 and s.note == ""
    if threshold is not None:
        assert ka < 12 and kb < 9  # the variance cut is exercised
    np.testing.assert_allclose(s.correlations, rho, atol=1e-9)
    assert s.value == pytest.approx(sv, abs=1e-9)
    assert p.value == pytest.approx(pw, abs=1e-9)
    assert p.weights.sum() == pytest.approx(1.0) and np.all(p.weights > 0)


def test_pwcca_weights_come_from_the_side_with_fewer_dimensions():
    x, y = _pair(da=5, db=9)
    _, ka, kb, _, pw_ab = _reference(x, y, None)
    assert ka < kb
    assert pwcca(x, y).value == pytest.approx(pw_ab, abs=1e-9)
    assert pwcca(y, x).value == pytest.approx(pw_ab, abs=1e-9)  # weights from x either way


def test_cka_matches_the_hsic_formula_with_centring_matrix():
    x, y = _pair(n=60)
    h = np.eye(60) - 1 / 60
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    expected = np.trace(k @ l) / np.sqrt(np.trace(k @ k) * np.trace(l @ l))
    assert linear_cka(x, y).value == pytest.approx(expected, abs=1e-12)
    # N < D: the Gram-matrix branch gives the same number
    x_wide = np.random.default_rng(3).normal(size=(20, 50))
    y_wide = x_wide[:, :30] + 0.5 * np.random.default_rng(4).normal(size=(20, 30))
    h = np.eye(20) - 1 / 20
    k, l = h @ x_wide @ x_wide.T @ h, h @ y_wide @ y_wide.T @ h
    expected = np.trace(k @ l) / np.sqrt(np.trace(k @ k) * np.trace(l @ l))
    assert linear_cka(x_wide, y_wide).value == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_representation_is_identical_to_itself(method):
    x, _ = _pair()
    r = compare(x, x, method)
    assert r.value == pytest.approx(1.0, abs=1e-10) and r.method == method
    conv = np.random.default_rng(1).normal(size=(50, 4, 3, 3))
    assert compare(conv, conv, method).value == pytest.approx(1.0, abs=1e-10)
    assert compare(conv, conv, method, conv="flatten").value == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("method", ["svcca", "cka"])
def test_svcca_and_cka_are_invariant_to_orthogonal_transforms_and_isotropic_scaling(method):
    x, y = _pair()
    base = compare(x, y, method).value
    qx, qy = _orthogonal(12, 1), _orthogonal(9, 2)
    assert compare(7.5 * x @ qx, y @ qy * 0.01, method).value == pytest.approx(base, abs=1e-9)


def test_pwcca_is_invariant_to_scaling_signed_permutations_and_rotating_the_unweighted_side():
    x, y = _pair(da=6, db=9)  # weights come from x (fewer dims)
    base = pwcca(x, y).value
    perm = np.random.default_rng(5).permutation(6)
    signs = np.array([1, -1, 1, -1, -1, 1])
    assert pwcca(3.0 * x[:, perm] * signs, 0.2 * y).value == pytest.approx(base, abs=1e-9)
    assert pwcca(x, y @ _orthogonal(9, 6)).value == pytest.approx(base, abs=1e-9)
    # documented: the projection weights sum |projections| on neurons, so a general rotation of the
    # weighted side changes them (Morcos et al.'s definition); the correlations themselves do not move
    rotated = pwcca(x @ _orthogonal(6, 7), y)
    np.testing.assert_allclose(rotated.correlations, pwcca(x, y).correlations, atol=1e-9)
    assert abs(rotated.value - base) > 1e-6


def test_cka_of_independent_noise_is_near_zero():
    # The linear-CKA estimator is biased upwards by about sqrt(Da·Db)/N = 16/4000 = 0.004 for
    # independent Gaussian features (Kornblith et al. 2019); 0.02 is five times that bias.
    rng = np.random.default_rng(0)
    v = linear_cka(rng.normal(size=(4000, 16)), rng.normal(size=(4000, 16))).value
    assert 0.0 <= v < 0.02


# --------------------------------------------------------------------------- conv maps and inputs


def test_conv_maps_are_averaged_by_default_or_flattened_to_positions():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(40, 5, 3, 3)), rng.normal(size=(40, 6, 3, 3))
    assert svcca(a, b).value == svcca(a.mean(axis=(2, 3)), b.mean(axis=(2, 3))).value
    flat = svcca(a, b, conv="flatten")
    ref = svcca(a.transpose(0, 2, 3, 1).reshape(-1, 5), b.transpose(0, 2, 3, 1).reshape(-1, 6))
    assert flat.value == ref.value and flat.n == 360
    with pytest.raises(ShapeMismatchError, match=r"spatial sizes.*conv='mean'"):
        svcca(a, rng.normal(size=(40, 6, 2, 2)), conv="flatten")


def test_accepts_torch_tensors_and_float32():
    x, y = _pair()
    expected = svcca(x, y).value
    assert svcca(torch.tensor(x), torch.tensor(y)).value == pytest.approx(expected, abs=1e-12)
    assert svcca(x.astype(np.float32), y.astype(np.float32)).value == pytest.approx(expected, abs=1e-4)


# --------------------------------------------------------------------------- bad input


def test_fewer_datapoints_than_neurons_reduces_the_rank_and_says_so():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 50)), rng.normal(size=(20, 8))
    for r in (svcca(a, b), pwcca(a, b)):
        assert np.isfinite(r.value) and 0 <= r.value <= 1
        assert r.dims_a <= 19 and r.n == 20
        assert "20 datapoints support at most 19 dimensions, fewer than its 50 neurons" in r.note
        assert "inflated" in r.note  # dims_a + dims_b > N - 1: some correlations are 1 by construction
        assert np.sum(r.correlations > 1 - 1e-9) >= r.dims_a + r.dims_b - 19
    assert svcca(a[:, :5], b).note == ""  # enough datapoints: no note


def test_mismatched_datapoints_name_both_shapes():
    with pytest.raises(ShapeMismatchError, match=r"a \(10, 4\) and b \(12, 3\)"):
        svcca(np.ones((10, 4)), np.ones((12, 3)))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_constant_or_zero_representations_raise_instead_of_nan(method):
    x, _ = _pair(n=30)
    with pytest.raises(DegenerateRepresentationError, match="representation b .* is all-zero"):
        compare(x, np.zeros((30, 4)), method)
    with pytest.raises(DegenerateRepresentationError, match="representation a .* is constant"):
        compare(np.full((30, 4), 2.5), x, method)
    # one dead neuron among live ones changes nothing
    padded = np.hstack([x, np.full((30, 1), 1e6)])
    assert compare(padded, x, method).value == pytest.approx(1.0, abs=1e-9)


def test_other_bad_input_is_a_clear_error():
    x = np.random.default_rng(0).normal(size=(30, 4))
    with pytest.raises(ShapeMismatchError, match="expected \\(N, D\\)"):
        svcca(x[:, 0], x)
    with pytest.raises(DegenerateRepresentationError, match="NaN"):
        svcca(np.where(x > 1, np.nan, x), x)
    with pytest.raises(DegenerateRepresentationError, match="at least 2"):
        linear_cka(x[:1], x[:1])
    with pytest.raises(ConfigError, match="threshold 1.5"):
        svcca(x, x, threshold=1.5)
    with pytest.raises(UnknownNameError, match="Did you mean 'svcca'"):
        compare(x, x, "svca")
    with pytest.raises(UnknownNameError, match="conv mode"):
        svcca(x, x, conv="max")
