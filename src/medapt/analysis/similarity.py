"""Similarity of two representations: SVCCA, PWCCA and linear CKA.

A *representation* is the response of ``D`` neurons to the same ``N`` datapoints, an array
``(N, D)``; a convolutional map ``(N, C, H, W)`` is first spatially averaged to ``(N, C)``
(``conv="mean"``, the default, which is what GAP features are) or reshaped to ``(N·H·W, C)``
(``conv="flatten"``: every position of every image is a datapoint, each channel a neuron; both
maps must then have the same ``H × W``). Everything is computed in float64.

Numerics (Raghu et al. 2017, *SVCCA*, as used by Raghu et al. 2019 *Transfusion* and Peng et al.
*TruncatedTL*):

1. centre each neuron over the datapoints;
2. SVD of each centred matrix, ``X = U S Vᵀ``; directions with singular values below the numerical
   rank tolerance (``s ≤ s_max · max(N, D) · eps``, NumPy's ``matrix_rank`` rule) carry no signal;
3. keep the top ``k`` directions explaining ``threshold`` (default 99 %) of the variance, counted
   from the squared singular values;
4. CCA between the two kept subspaces: an orthonormal basis of each (``Q`` of a QR of the reduced
   set ``U_k S_k``; that ``Q`` *is* ``U_k`` up to column signs, so ``U_k`` is used directly, which
   keeps full accuracy when ``S_k`` is badly conditioned), then the singular values of ``Q_aᵀ Q_b``
   are the canonical correlations, clipped to [0, 1];
5. SVCCA is their mean.

Data can support at most ``N − 1`` dimensions once centred. A representation with more neurons
than that is reduced to the rank the data supports, and the result's ``note`` says so; when the two
kept subspaces together exceed ``N − 1`` dimensions they must share at least
``dims_a + dims_b − (N − 1)`` directions, whose canonical correlations are 1 by construction —
the note says that too, since the value is then inflated. No input gives a silent NaN: mismatched
datapoint counts raise :class:`~medapt.errors.ShapeMismatchError`; a constant (or all-zero)
representation raises :class:`DegenerateRepresentationError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, MedaptError, ShapeMismatchError, UnknownNameError
from ..registry import Registry

__all__ = [
    "CONV_MODES",
    "METHODS",
    "DegenerateRepresentationError",
    "LimitedDataWarning",
    "SimilarityResult",
    "as_datapoints",
    "compare",
    "linear_cka",
    "pwcca",
    "svcca",
]

#: How a conv map (N, C, H, W) becomes datapoints × neurons.
CONV_MODES = ("mean", "flatten")

#: name -> ``f(a, b, **options) -> SimilarityResult``; the names used in per-unit tables.
METHODS: Registry[Callable[..., "SimilarityResult"]] = Registry(
    "similarity method", hint="Known: svcca, pwcca, cka (medapt.analysis.METHODS lists them)."
)


class DegenerateRepresentationError(MedaptError, ValueError):
    """A representation carries no variance (constant or all-zero neurons, or a single datapoint),
    so every similarity measure is undefined."""


class LimitedDataWarning(UserWarning):
    """Too few datapoints for the dimensions compared: values are inflated (see the result's ``note``)."""


@dataclass(frozen=True)
class SimilarityResult:
    """One similarity value and what it was computed from.

    Attributes:
        method: ``svcca``, ``pwcca`` or ``cka``.
        value: the similarity, in [0, 1].
        dims_a, dims_b: dimensions used on each side (kept SVD directions for SVCCA/PWCCA;
            neurons for CKA).
        n: datapoints (rows) compared.
        note: empty, or why the value should be read with care (rank reduction, inflated CCA).
        correlations: canonical correlations, descending (SVCCA/PWCCA; ``None`` for CKA).
        weights: PWCCA's projection weights, parallel to ``correlations`` (``None`` otherwise).
    """

    method: str
    value: float
    dims_a: int
    dims_b: int
    n: int
    note: str = ""
    correlations: np.ndarray | None = field(default=None, repr=False, compare=False)
    weights: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __float__(self) -> float:
        return self.value


# ----------------------------------------------------------------------------- input


def as_datapoints(x: Any, *, conv: str = "mean", name: str = "a") -> np.ndarray:
    """A representation as float64 ``(datapoints, neurons)``.

    Args:
        x: ``(N, D)`` or a conv map ``(N, C, H, W)``; NumPy array (memmaps included) or torch tensor.
        conv: ``mean`` — average over H, W → ``(N, C)``; ``flatten`` → ``(N·H·W, C)``.
        name: how error messages call this input.

    >>> as_datapoints(np.ones((2, 3, 4, 4))).shape
    (2, 3)
    """
    if conv not in CONV_MODES:
        raise UnknownNameError("conv mode", str(conv), CONV_MODES)
    if hasattr(x, "detach"):  # a torch tensor; torch itself is not imported here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 4:
        arr = arr.mean(axis=(2, 3)) if conv == "mean" else arr.transpose(0, 2, 3, 1).reshape(-1, arr.shape[1])
    elif arr.ndim != 2:
        raise ShapeMismatchError(
            f"representation {name} has shape {tuple(np.shape(x))}; expected (N, D) datapoints × neurons "
            "or a conv map (N, C, H, W). Reshape it, e.g. x.reshape(len(x), -1)."
        )
    if not np.all(np.isfinite(arr)):
        raise DegenerateRepresentationError(
            f"representation {name} (shape {tuple(np.shape(x))}) contains NaN or inf; check the model's activations."
        )
    return arr


def _pair(a: Any, b: Any, conv: str) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as (N, D) float64, checked to describe the same datapoints."""
    sa, sb = tuple(np.shape(a)), tuple(np.shape(b))
    if conv == "flatten" and len(sa) == len(sb) == 4 and sa[2:] != sb[2:]:
        raise ShapeMismatchError(
            f"conv maps a {sa} and b {sb} have different spatial sizes; conv='flatten' treats every "
            "position as a datapoint, so H × W must match. Use conv='mean' (spatial average) instead."
        )
    x, y = as_datapoints(a, conv=conv, name="a"), as_datapoints(b, conv=conv, name="b")
    if len(x) != len(y):
        raise ShapeMismatchError(
            f"representations a {sa} and b {sb} have {len(x)} and {len(y)} datapoints; both must hold "
            "the responses to the same datapoints (rows), in the same order."
        )
    if len(x) < 2:
        raise DegenerateRepresentationError(
            f"representations a {sa} and b {sb} have {len(x)} datapoint(s); similarity needs at least 2 "
            "(and many more than the neurons kept for SVCCA/PWCCA)."
        )
    return x, y


def _centre(x: np.ndarray, name: str, shape: tuple) -> np.ndarray:
    """Centre each neuron; constant neurons become exact zeros; an all-constant input is an error."""
    const = np.ptp(x, axis=0) == 0
    if const.all():
        what = "all-zero" if not np.any(x) else "constant"
        raise DegenerateRepresentationError(
            f"representation {name} (shape {shape}) is {what} across all {len(x)} datapoints: every neuron has "
            "zero variance, so its similarity to anything is undefined. Check that the layer is not dead "
            "(all zero after a ReLU) and that the datapoints differ."
        )
    xc = x - x.mean(axis=0, keepdims=True)
    xc[:, const] = 0.0  # rounding in the mean would otherwise leave a tiny constant column
    return xc


# ----------------------------------------------------------------------------- SVD + CCA


@dataclass(frozen=True)
class _Reduced:
    basis: np.ndarray  # (N, k) orthonormal basis of the kept directions
    centred: np.ndarray  # (N, D) centred neurons
    k: int
    rank: int


def _reduce(xc: np.ndarray, threshold: float | None) -> _Reduced:
    """Keep the top directions explaining ``threshold`` of the variance (``None``: the full rank)."""
    n, d = xc.shape
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    rank = int(np.sum(s > s[0] * max(n, d) * np.finfo(np.float64).eps))
    if threshold is None:
        k = rank
    else:
        var = s[:rank] ** 2
        frac = np.cumsum(var) / var.sum()
        k = min(int(np.searchsorted(frac, threshold)) + 1, rank)  # smallest k with frac[k-1] >= threshold
    return _Reduced(u[:, :k], xc, k, rank)


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and not (0.0 < threshold <= 1.0):
        raise ConfigError(
            f"threshold {threshold!r} is not a fraction of variance in (0, 1]; use 0.99 (Raghu et al.) "
            "or None to keep every direction the data supports."
        )


def _cca(ra: _Reduced, rb: _Reduced) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical correlations (descending, clipped to [0, 1]) and the rotations P (k_a×m), R (k_b×m)."""
    p, rho, rt = np.linalg.svd(ra.basis.T @ rb.basis, full_matrices=False)
    return np.clip(rho, 0.0, 1.0), p, rt.T


def _note(n: int, da: int, db: int, ra: _Reduced, rb: _Reduced) -> str:
    parts = []
    for name, d, r in (("a", da, ra), ("b", db, rb)):
        if d > n - 1:
            parts.append(
                f"{name}: {n} datapoints support at most {n - 1} dimensions, fewer than its {d} neurons; "
                f"reduced to {r.k} (data rank {r.rank})"
            )
    if ra.k + rb.k > n - 1:
        parts.append(
            f"dims_a + dims_b = {ra.k + rb.k} > N - 1 = {n - 1}: at least {ra.k + rb.k - (n - 1)} canonical "
            "correlations are 1 by construction, so the value is inflated; use many more datapoints than dimensions"
        )
    return "; ".join(parts)


def _prepare(a: Any, b: Any, conv: str, threshold: float | None):
    _check_threshold(threshold)
    x, y = _pair(a, b, conv)
    ra = _reduce(_centre(x, "a", tuple(np.shape(a))), threshold)
    rb = _reduce(_centre(y, "b", tuple(np.shape(b))), threshold)
    return ra, rb, len(x), _note(len(x), x.shape[1], y.shape[1], ra, rb)


# ----------------------------------------------------------------------------- measures


@METHODS.register("svcca")
def svcca(a: Any, b: Any, *, threshold: float | None = 0.99, conv: str = "mean") -> SimilarityResult:
    """SVCCA similarity (Raghu et al. 2017): mean canonical correlation of the top SVD directions.

    Args:
        a, b: ``(N, D_a)`` and ``(N, D_b)`` (or conv maps ``(N, C, H, W)``), the same N datapoints.
        threshold: fraction of variance the kept SVD directions explain (0.99 as in the paper);
            ``None`` keeps every direction the data supports (plain CCA).
        conv: ``mean`` (spatial average) or ``flatten`` (``N·H·W × C``) for conv maps.

    Returns:
        :class:`SimilarityResult` with ``value`` in [0, 1], the kept dimensions, ``n``, a ``note``
        when the data limit the result, and the canonical correlations.

    Invariant to orthogonal transforms and isotropic scaling of either side.

    >>> x = np.random.default_rng(0).normal(size=(200, 8))
    >>> round(svcca(x, 3 * x).value, 6)
    1.0
    """
    ra, rb, n, note = _prepare(a, b, conv, threshold)
    rho, _, _ = _cca(ra, rb)
    return SimilarityResult("svcca", float(rho.mean()), ra.k, rb.k, n, note, correlations=rho)


@METHODS.register("pwcca")
def pwcca(a: Any, b: Any, *, threshold: float | None = None, conv: str = "mean") -> SimilarityResult:
    """Projection-weighted CCA (Morcos et al. 2018): canonical correlations weighted by how much of
    the neurons each canonical variate accounts for.

    With canonical correlations ``ρ_i`` and unit-norm canonical variates ``h_i`` (N-vectors, the
    responses of canonical direction ``i``) of the side with fewer kept dimensions (``a`` on a tie,
    the side Morcos et al.'s code uses), and that side's centred neurons ``z_j``:
    ``α_i = Σ_j |⟨h_i, z_j⟩|``, normalised to sum to 1, and ``PWCCA = Σ_i α_i ρ_i`` — eq. (2)–(3)
    of the paper. (The authors' published ``pwcca.py`` orthonormalises rotated neurons rather than
    the canonical variates and uses uncentred activations; this follows the paper.) The variates
    ``h_i`` are already orthonormal, so the paper's extra QR step changes nothing.

    Args:
        a, b: ``(N, D_a)``, ``(N, D_b)`` or conv maps, the same N datapoints.
        threshold: ``None`` (default, as in the paper: no SVD step, CCA on every direction the data
            supports) or a variance fraction for an SVD step first, as in :func:`svcca`.
        conv: see :func:`svcca`.

    PWCCA is not symmetric (the weights come from one side) and, because ``α`` sums absolute
    projections on *neurons*, it is invariant to isotropic scaling, to permutations and sign flips
    of neurons and to any orthogonal transform of the side not used for the weights — but not to a
    general rotation of the weighted side.

    >>> x = np.random.default_rng(0).normal(size=(200, 8))
    >>> round(pwcca(x, x[:, ::-1]).value, 6)
    1.0
    """
    ra, rb, n, note = _prepare(a, b, conv, threshold)
    rho, p, r = _cca(ra, rb)
    m = len(rho)
    side, rot = (ra, p) if ra.k <= rb.k else (rb, r)
    h = side.basis @ rot[:, :m]  # (N, m) orthonormal canonical variates
    alpha = np.abs(h.T @ side.centred).sum(axis=1)  # > 0: each h_i lies in the span of the neurons
    alpha /= alpha.sum()
    return SimilarityResult("pwcca", float(np.clip(alpha @ rho, 0.0, 1.0)), ra.k, rb.k, n, note,
                            correlations=rho, weights=alpha)


@METHODS.register("cka")
def linear_cka(a: Any, b: Any, *, conv: str = "mean") -> SimilarityResult:
    """Linear CKA (Kornblith et al. 2019) on centred features.

    ``CKA = ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F)`` for centred ``X (N, D_a)``, ``Y (N, D_b)`` —
    computed from the ``D × D`` products when ``N > D``, else from the ``N × N`` Gram matrices
    (``⟨XXᵀ, YYᵀ⟩ / (‖XXᵀ‖ ‖YYᵀ‖)``, the same number). No SVD step: ``dims_a``/``dims_b`` are the
    neuron counts. Invariant to orthogonal transforms and isotropic scaling, not to general
    invertible linear maps. Independent noise does not give exactly 0: the estimator is biased
    upwards by about ``√(D_a D_b) / N``.

    Args:
        a, b: ``(N, D_a)``, ``(N, D_b)`` or conv maps, the same N datapoints.
        conv: see :func:`svcca`.

    >>> x = np.random.default_rng(0).normal(size=(200, 8))
    >>> round(linear_cka(x, 2 * x).value, 6)
    1.0
    """
    x, y = _pair(a, b, conv)
    n = len(x)
    xc, yc = _centre(x, "a", tuple(np.shape(a))), _centre(y, "b", tuple(np.shape(b)))
    xc, yc = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)  # scale-free: avoids overflow
    if n > max(xc.shape[1], yc.shape[1]):
        cross = np.linalg.norm(yc.T @ xc) ** 2
        value = cross / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    else:
        k, l = xc @ xc.T, yc @ yc.T
        value = np.sum(k * l) / (np.linalg.norm(k) * np.linalg.norm(l))
    return SimilarityResult("cka", float(np.clip(value, 0.0, 1.0)), x.shape[1], y.shape[1], n)


def compare(a: Any, b: Any, method: str = "svcca", **options: Any) -> SimilarityResult:
    """The similarity ``method`` (``svcca``, ``pwcca`` or ``cka``) between two representations.

    ``options`` go to the measure (``threshold``, ``conv``).

    >>> x = np.random.default_rng(0).normal(size=(100, 4))
    >>> compare(x, x, "cka").value
    1.0
    """
    return METHODS.get(method)(a, b, **options)
