"""``phantom``: a deterministic, offline generator of brain-MRI-like 2-D slices.

Built on the MNI ICBM152 2009 templates that ship inside the ``nilearn`` wheel
(:func:`nilearn.datasets.load_mni152_template`, ``load_mni152_gm_template``,
``load_mni152_wm_template``, ``load_mni152_brain_mask``; no download). Each synthetic *patient*
is the template under a random pose (rotation, tilt, scale, shift), tissue contrast and
texture, with 3-D synthetic lesions placed in world (mm) coordinates; its slices are planes cut
through the lesion at different levels, rendered directly at the requested size by trilinear
sampling (2× supersampled, then averaged). Tissue maps give T1-, T1-post-contrast-, T2- and
PD-like contrasts.

Tasks (class names in label order):

* ``grade`` — ``[low_grade, high_grade]`` on pre-contrast T1-like slices (the BraTS-like source
  task): high-grade-like lesions are on average larger, more irregular, heterogeneous, necrotic,
  with more oedema and mass effect; the distributions overlap.
* ``tumor_type`` — ``[meningioma, glioma, pituitary]`` on T1-post-contrast-like slices (CE-MRI
  like): extra-axial, homogeneously enhancing, dural-based masses; intra-axial irregular
  ring-enhancing masses; midline sellar masses (a share of meningiomas is parasellar).
* ``disease`` — ``[normal, neoplastic, vascular, degenerative, inflammatory]`` on mixed
  T1/T2/PD-like slices (HMS-atlas like): none; a mass with oedema; a wedge-shaped infarct or a
  haemorrhage plus lacunes; atrophy (ventricles and sulci widened); multiple small ovoid
  periventricular lesions. Normal brains get mild atrophy and occasional tiny white-matter dots.

``shift=True`` makes an external cohort: stronger bias field, noise, a contrast (gamma) curve,
lower resolution, and coronal or sagittal slices besides axial ones.

It exists so that the pipeline runs offline in minutes; it is *not* a substitute for real data.
The class signal is real but not trivial (a logistic regression on raw downsampled pixels lands
well below AUC 1.0; see ``tests/data/test_phantom.py``).

Example::

    >>> from medapt.data.phantom import generate
    >>> images, labels, patients = generate("grade", n_per_class=8, size=64, seed=0)
    >>> images.shape, labels[:8].tolist()
    ((16, 64, 64), [0, 0, 0, 0, 1, 1, 1, 1])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .readers import ReadContext, Record, Source, reader
from .spec import PHANTOM_CLASSES, PhantomSpec

__all__ = ["generate", "read_phantom", "PHANTOM_CLASSES"]

_TASK_ID = {"grade": 1, "tumor_type": 2, "disease": 3}
_FOV_MM = 220.0  # field of view of a slice: the whole head with a margin

# tissue intensities (csf, gm, wm, fat/scalp) per contrast, before per-patient jitter
_TISSUE = {
    "t1": (0.12, 0.52, 0.80, 0.85),
    "t1c": (0.12, 0.50, 0.76, 0.85),
    "t2": (0.95, 0.55, 0.36, 0.55),
    "pd": (0.80, 0.70, 0.55, 0.70),
}
# lesion compartment intensities (solid, necrosis, oedema) per contrast; enhancement is added on t1c
_LESION = {
    "t1": (0.40, 0.16, 0.48),
    "t1c": (0.45, 0.16, 0.46),
    "t2": (0.72, 0.95, 0.82),
    "pd": (0.82, 0.92, 0.88),
}


# --------------------------------------------------------------------------- atlas


@dataclass(frozen=True)
class _Atlas:
    t1: np.ndarray  # (X, Y, Z) float32, template T1 in [0, 1]
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    origin: np.ndarray  # world mm of voxel (0, 0, 0); 1 mm isotropic
    deep_wm: np.ndarray  # (K, 3) world points for intra-axial lesions
    cortex: np.ndarray  # (K, 3) world points on the brain surface (extra-axial / infarcts)
    periventricular: np.ndarray  # (K, 3)
    basal: np.ndarray  # (K, 3) deep grey matter (lacunes)
    ventricle_center: np.ndarray  # (3,)
    brain_center: np.ndarray  # (3,)


@functools.lru_cache(maxsize=1)
def _atlas() -> _Atlas:
    """Load the 1 mm MNI152 templates from the nilearn wheel (~0.2 s) and derive landmarks."""
    from nilearn.datasets import (
        load_mni152_brain_mask,
        load_mni152_gm_template,
        load_mni152_template,
        load_mni152_wm_template,
    )

    # resolution=1 reads the shipped 1 mm files as they are (resolution=2 would resample, ~1 s)
    t1_img = load_mni152_template(resolution=1)
    t1 = np.asarray(t1_img.get_fdata(dtype=np.float32))
    gm = np.asarray(load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32))
    wm = np.asarray(load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32))
    mask = np.asarray(load_mni152_brain_mask(resolution=1).get_fdata(dtype=np.float32)) > 0.5
    aff = t1_img.affine
    if not np.allclose(np.abs(np.diag(aff)[:3]), 1.0) or not np.allclose(aff[:3, :3], np.diag(np.diag(aff)[:3])):
        raise RuntimeError("unexpected MNI152 template affine; the phantom expects 1 mm axis-aligned")
    origin = aff[:3, 3].astype(np.float64)
    t1 = t1 / max(float(t1.max()), 1e-6)
    csf = np.clip(mask.astype(np.float32) - gm - wm, 0.0, 1.0)

    # landmarks on a 3 mm grid: cheap morphology, plenty of candidate points
    s = 3
    m3, g3, w3, c3 = mask[::s, ::s, ::s], gm[::s, ::s, ::s], wm[::s, ::s, ::s], csf[::s, ::s, ::s]
    inner = ndimage.binary_erosion(m3, iterations=2)
    deep = ndimage.binary_erosion(m3, iterations=5)
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n in m3.shape], indexing="ij"), -1) + origin
    vent = (c3 > 0.7) & deep
    near_vent = ndimage.binary_dilation(vent, iterations=4) & ~vent
    cortex = m3 & ~inner & (g3 > 0.3)
    pts_deep = grid[(w3 > 0.75) & ndimage.binary_erosion(m3, iterations=4)]
    # keep cortex points above the skull base, where convexity meningiomas and infarcts sit
    pts_cortex = grid[cortex]
    pts_cortex = pts_cortex[pts_cortex[:, 2] > -10]
    pts_pv = grid[near_vent & (w3 > 0.6)]
    basal = (g3 > 0.6) & deep & (np.abs(grid[..., 0]) < 32) & (np.abs(grid[..., 2] - 4) < 14)
    pts_basal = grid[basal]
    return _Atlas(
        t1=t1, gm=gm, wm=wm, csf=csf, origin=origin,
        deep_wm=pts_deep, cortex=pts_cortex, periventricular=pts_pv, basal=pts_basal,
        ventricle_center=grid[vent].mean(0), brain_center=grid[m3].mean(0),
    )


# --------------------------------------------------------------------------- random fields


@dataclass
class _Waves:
    """A smooth random field: a sum of plane waves, evaluated at world points (mm)."""

    k: np.ndarray  # (J, 3) wave vectors (rad/mm)
    phase: np.ndarray  # (J,)

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int, wavelength: tuple[float, float]) -> _Waves:
        u = rng.normal(size=(n, 3))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        lam = rng.uniform(*wavelength, size=(n, 1))
        return cls(k=u * (2 * np.pi / lam), phase=rng.uniform(0, 2 * np.pi, n))

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        """pts (3, M) → (M,) with unit variance on average."""
        return np.sin(self.k @ pts + self.phase[:, None]).sum(0) * math.sqrt(2.0 / len(self.phase))


@dataclass
class _Lesion:
    """A 3-D lesion: an irregular ellipsoid with optional necrotic core, enhancing rim, oedema."""

    center: np.ndarray  # (3,) world mm
    radii: np.ndarray  # (3,) semi-axes mm
    irregular: float  # 0 = smooth ellipsoid, 0.4 = lobulated
    shape_dirs: np.ndarray  # (K, 3) unit vectors for the radial irregularity
    shape_freq: np.ndarray  # (K,)
    shape_phase: np.ndarray  # (K,)
    softness: float = 0.08  # margin width (fraction of the radius): small = well defined
    necrosis: float = 0.0  # necrotic core radius (fraction)
    rim: float = 0.0  # enhancing rim thickness (fraction); t1c only
    enhance_solid: float = 0.0  # 0..1 enhancement of the solid part on t1c
    enhance_rim: float = 0.0
    edema: float = 0.0  # oedema extent beyond the lesion (fraction of the radius)
    mass_effect: float = 0.0  # 0..0.6, how far surrounding anatomy is pushed away
    hetero: float = 0.0  # amplitude of internal heterogeneity
    texture: _Waves | None = None
    kind: str = "tumour"  # "tumour" | "fluid" (infarct/MS plaque: oedema-like signal) | "blood"
    solid_shift: float = 0.0  # per-lesion offset of the solid intensity
    small: bool = False  # one of many small lesions (plaques, lacunes): slices are not centred on it

    @classmethod
    def draw(cls, rng: np.random.Generator, center, radii, irregular: float, **kw) -> _Lesion:
        k = 6
        dirs = rng.normal(size=(k, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        return cls(
            center=np.asarray(center, float), radii=np.asarray(radii, float), irregular=irregular,
            shape_dirs=dirs, shape_freq=rng.integers(1, 4, k).astype(float),
            shape_phase=rng.uniform(0, 2 * np.pi, k), texture=_Waves.draw(rng, 6, (4.0, 12.0)), **kw,
        )

    def rho(self, pts: np.ndarray) -> np.ndarray:
        """Normalised radius at pts (3, M): < 1 inside the (irregular) lesion."""
        d = (pts - self.center[:, None]) / self.radii[:, None]
        r = np.sqrt((d * d).sum(0)) + 1e-9
        u = d / r
        wob = np.sin(np.pi * self.shape_freq[:, None] * (self.shape_dirs @ u) + self.shape_phase[:, None]).mean(0)
        return r / np.maximum(1.0 + self.irregular * 1.6 * wob, 0.3)

    def max_radius(self) -> float:
        return float(self.radii.max() * (1.0 + self.irregular) * (1.0 + self.edema))


@dataclass
class _Patient:
    contrast: str  # for 'mixed' tasks each slice draws its own
    tissue_jitter: np.ndarray  # (4,) added to the tissue intensities
    rotation: np.ndarray  # (3, 3) pose of the head
    scale: float
    shift_mm: np.ndarray  # (3,)
    orientation: str  # axial | coronal | sagittal
    atrophy: float  # 0..1: ventricle enlargement + sulcal widening
    lesions: list[_Lesion] = field(default_factory=list)
    focus: np.ndarray | None = None  # world point the slices pass through (None: brain centre)
    focus_spread: float = 12.0  # mm spread of the slice levels around the focus
    texture: _Waves | None = None
    scanner_shift: bool = False


# --------------------------------------------------------------------------- lesion recipes


def _pick(rng: np.random.Generator, pts: np.ndarray) -> np.ndarray:
    return pts[rng.integers(len(pts))] + rng.uniform(-1.5, 1.5, 3)


def _grade_lesion(rng: np.random.Generator, atlas: _Atlas, high: bool) -> _Lesion:
    c = _pick(rng, atlas.deep_wm)
    r = rng.uniform(14, 30) if high else rng.uniform(7, 18)
    radii = r * rng.uniform(0.75, 1.25, 3)
    necrotic = rng.random() < (0.7 if high else 0.1)
    return _Lesion.draw(
        rng, c, radii,
        irregular=rng.uniform(0.1, 0.4) if high else rng.uniform(0.0, 0.15),
        softness=rng.uniform(0.06, 0.2),
        necrosis=rng.uniform(0.3, 0.6) if necrotic else 0.0,
        edema=rng.uniform(0.3, 1.1) if high else rng.uniform(0.0, 0.35),
        mass_effect=rng.uniform(0.15, 0.5) if high else rng.uniform(0.0, 0.2),
        hetero=rng.uniform(0.05, 0.14) if high else rng.uniform(0.0, 0.06),
        solid_shift=rng.normal(0.0, 0.06),
    )


def _tumor_type_lesion(rng: np.random.Generator, atlas: _Atlas, kind: str) -> _Lesion:
    if kind == "pituitary":
        c = np.array([0.0, 2.0, -30.0]) + rng.normal(0, [2.0, 3.0, 3.0])
        r = rng.uniform(6, 16)
        radii = np.array([r * rng.uniform(0.8, 1.1), r * rng.uniform(0.8, 1.1), r * rng.uniform(1.0, 1.6)])
        c[2] += radii[2] * 0.4  # macroadenomas grow up out of the sella
        return _Lesion.draw(
            rng, c, radii, irregular=rng.uniform(0.0, 0.15), softness=rng.uniform(0.05, 0.15),
            necrosis=rng.uniform(0.2, 0.5) if rng.random() < 0.2 else 0.0,
            enhance_solid=rng.uniform(0.45, 0.9), mass_effect=rng.uniform(0.0, 0.25),
            hetero=rng.uniform(0.0, 0.08), solid_shift=rng.normal(0.0, 0.05),
        )
    if kind == "meningioma":
        if rng.random() < 0.12:  # parasellar / skull-base meningioma, close to the pituitary
            c = np.array([rng.choice([-1, 1]) * rng.uniform(8, 25), rng.uniform(-5, 20), rng.uniform(-32, -15)])
        else:
            p = _pick(rng, atlas.cortex[atlas.cortex[:, 2] < 50])  # not on the vertex
            out = p - atlas.brain_center
            c = p + out / np.linalg.norm(out) * rng.uniform(2, 8)  # dural-based, outside the cortex
        r = rng.uniform(8, 24)
        return _Lesion.draw(
            rng, c, r * rng.uniform(0.8, 1.2, 3), irregular=rng.uniform(0.0, 0.15),
            softness=rng.uniform(0.04, 0.12), enhance_solid=rng.uniform(0.5, 1.0),
            edema=rng.uniform(0.0, 0.5) if rng.random() < 0.4 else 0.0,
            mass_effect=rng.uniform(0.1, 0.45), hetero=rng.uniform(0.0, 0.06),
            solid_shift=rng.normal(0.0, 0.05),
        )
    # glioma: intra-axial (some in the temporal lobes, down at the pituitary's levels)
    c = _pick(rng, atlas.deep_wm)
    if rng.random() < 0.15:
        c = np.array([rng.choice([-1, 1]) * rng.uniform(30, 45), rng.uniform(-15, 10), rng.uniform(-25, -5)])
    r = rng.uniform(10, 26)
    ring = rng.random() < 0.6
    return _Lesion.draw(
        rng, c, r * rng.uniform(0.75, 1.25, 3), irregular=rng.uniform(0.05, 0.4),
        softness=rng.uniform(0.08, 0.22), necrosis=rng.uniform(0.3, 0.6) if ring else 0.0,
        rim=rng.uniform(0.12, 0.3) if ring else 0.0, enhance_rim=rng.uniform(0.5, 1.0),
        enhance_solid=rng.uniform(0.0, 0.5), edema=rng.uniform(0.1, 0.9),
        mass_effect=rng.uniform(0.05, 0.4), hetero=rng.uniform(0.03, 0.12),
        solid_shift=rng.normal(0.0, 0.05),
    )


def _small_lesions(rng, atlas, n: int, pts: np.ndarray, r: tuple[float, float]) -> list[_Lesion]:
    out = []
    for _ in range(n):
        c = _pick(rng, pts)
        radial = c - atlas.ventricle_center
        radial /= np.linalg.norm(radial) + 1e-9
        rr = rng.uniform(*r)
        # ovoid, long axis pointing away from the ventricles (Dawson's fingers)
        radii = rr * (1.0 + 0.8 * np.abs(radial)) * rng.uniform(0.8, 1.2, 3)
        out.append(_Lesion.draw(rng, c, radii, irregular=rng.uniform(0.0, 0.2),
                                softness=rng.uniform(0.15, 0.3), kind="fluid", small=True))
    return out


def _disease_lesions(rng: np.random.Generator, atlas: _Atlas, kind: str, p: _Patient) -> None:
    if kind == "normal":
        p.atrophy = rng.uniform(0.0, 0.3)
        if rng.random() < 0.1:
            p.lesions += _small_lesions(rng, atlas, int(rng.integers(1, 3)), atlas.deep_wm, (1.5, 3.0))
    elif kind == "degenerative":
        p.atrophy = rng.uniform(0.5, 1.0)
        if rng.random() < 0.35:
            p.lesions += _small_lesions(rng, atlas, int(rng.integers(1, 5)), atlas.periventricular, (1.5, 4.0))
    elif kind == "inflammatory":
        p.atrophy = rng.uniform(0.0, 0.4)
        p.lesions += _small_lesions(rng, atlas, int(rng.integers(10, 24)), atlas.periventricular, (3.0, 7.0))
        if rng.random() < 0.25:  # tumefactive plaque, looks like a mass
            p.lesions.append(_Lesion.draw(rng, _pick(rng, atlas.deep_wm), rng.uniform(8, 14, 3),
                                          irregular=rng.uniform(0.0, 0.2), softness=0.2,
                                          edema=rng.uniform(0.1, 0.4), kind="fluid"))
    elif kind == "vascular":
        p.atrophy = rng.uniform(0.0, 0.6)
        if rng.random() < 0.25:  # haemorrhage
            les = _Lesion.draw(rng, _pick(rng, atlas.basal if rng.random() < 0.5 else atlas.deep_wm),
                               rng.uniform(6, 16, 3), irregular=rng.uniform(0.0, 0.25), softness=0.1,
                               edema=rng.uniform(0.2, 0.6), kind="blood", mass_effect=rng.uniform(0.0, 0.2))
        else:  # wedge-shaped territorial infarct reaching the cortex
            q = _pick(rng, atlas.cortex)
            inward = atlas.brain_center - q
            inward /= np.linalg.norm(inward)
            depth = rng.uniform(10, 30)
            radii = np.array([rng.uniform(12, 28), rng.uniform(12, 28), rng.uniform(8, 18)])
            les = _Lesion.draw(rng, q + inward * depth * 0.5, radii, irregular=rng.uniform(0.1, 0.35),
                               softness=rng.uniform(0.1, 0.25), kind="fluid")
        p.lesions.append(les)
        p.lesions += _small_lesions(rng, atlas, int(rng.integers(1, 5)), atlas.basal, (1.5, 3.5))
    elif kind == "neoplastic":
        p.atrophy = rng.uniform(0.0, 0.4)
        n = 1 if rng.random() < 0.8 else int(rng.integers(2, 4))  # primary vs metastases
        for _ in range(n):
            r = rng.uniform(14, 28) if n == 1 else rng.uniform(7, 13)
            p.lesions.append(_Lesion.draw(
                rng, _pick(rng, atlas.deep_wm if rng.random() < 0.7 else atlas.cortex),
                r * rng.uniform(0.8, 1.2, 3), irregular=rng.uniform(0.0, 0.35),
                softness=rng.uniform(0.06, 0.2),
                necrosis=rng.uniform(0.3, 0.6) if rng.random() < 0.5 else 0.0,
                edema=rng.uniform(0.4, 1.2), mass_effect=rng.uniform(0.1, 0.45),
                hetero=rng.uniform(0.02, 0.1), solid_shift=rng.normal(0.0, 0.05)))
    else:  # pragma: no cover - guarded by the spec
        raise ValueError(kind)


# --------------------------------------------------------------------------- patients


def _rotation(rng: np.random.Generator, deg: tuple[float, float, float]) -> np.ndarray:
    a, b, c = (np.deg2rad(rng.uniform(-d, d)) for d in deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _make_patient(task: str, cls: str, shift: bool, rng: np.random.Generator) -> _Patient:
    atlas = _atlas()
    contrast = {"grade": "t1", "tumor_type": "t1c", "disease": "mixed"}[task]
    orientation = "axial"
    if shift:
        orientation = str(rng.choice(["axial", "coronal", "sagittal"]))
    p = _Patient(
        contrast=contrast,
        tissue_jitter=rng.normal(0.0, 0.04, 4),
        rotation=_rotation(rng, (6.0, 4.0, 10.0)),
        scale=float(rng.uniform(0.9, 1.1)),
        shift_mm=rng.normal(0.0, 4.0, 3),
        orientation=orientation,
        atrophy=float(rng.uniform(0.0, 0.3)),
        texture=_Waves.draw(rng, 10, (6.0, 25.0)),
        scanner_shift=shift,
    )
    if task == "grade":
        p.lesions.append(_grade_lesion(rng, atlas, high=(cls == "high_grade")))
    elif task == "tumor_type":
        p.lesions.append(_tumor_type_lesion(rng, atlas, cls))
    else:
        _disease_lesions(rng, atlas, cls, p)
    big = [les for les in p.lesions if not les.small]
    if big:
        main = max(big, key=lambda les: les.radii.max())
        p.focus, p.focus_spread = main.center, float(main.radii.min()) * 0.5
    elif p.lesions:  # many small plaques: slices through the periventricular white matter
        p.focus, p.focus_spread = atlas.ventricle_center + np.array([0.0, 0.0, 12.0]), 10.0
    else:  # slices through the lateral ventricles, where atrophy shows
        p.focus, p.focus_spread = atlas.ventricle_center + np.array([0.0, 0.0, 6.0]), 8.0
    return p


_AXES = {  # (column direction, row direction) in world (RAS) coordinates
    "axial": (np.array([1.0, 0, 0]), np.array([0, -1.0, 0])),
    "coronal": (np.array([1.0, 0, 0]), np.array([0, 0, -1.0])),
    "sagittal": (np.array([0, 1.0, 0]), np.array([0, 0, -1.0])),
}


def _slice_points(p: _Patient, offset: float, n: int) -> np.ndarray:
    """World points (3, n*n) of one slice of patient ``p``, ``offset`` mm off its focus."""
    u, v = _AXES[p.orientation]
    normal = np.cross(u, v)
    head_centre = np.array([0.0, -18.0, 10.0])
    # the focus is in anatomy coordinates: bring it into the scanner frame (inverse pose) so the
    # plane really passes through it; the in-plane centre is the head's centre
    focus = p.rotation.T @ ((np.asarray(p.focus, float) - head_centre - p.shift_mm) * p.scale) + head_centre
    centre = head_centre + normal * (np.dot(focus - head_centre, normal) + offset)
    step = _FOV_MM / n
    g = (np.arange(n) - (n - 1) / 2.0) * step
    plane = centre[:, None, None] + u[:, None, None] * g[None, None, :] + v[:, None, None] * g[None, :, None]
    pts = plane.reshape(3, -1)
    # the patient's pose: rotate/scale the head around the centre, then shift it
    return (p.rotation @ (pts - head_centre[:, None])) / p.scale + head_centre[:, None] + p.shift_mm[:, None]


def _pull(pts: np.ndarray, centre: np.ndarray, radius: float, strength: float) -> np.ndarray:
    """Sample anatomy closer to ``centre``: tissue appears pushed outwards (mass effect, ventricles)."""
    d = pts - centre[:, None]
    w = np.exp(-(d * d).sum(0) / (2.0 * radius * radius))
    return pts - d * (strength * w)


def _render(p: _Patient, pts: np.ndarray, n: int, ss: int, contrast: str, rng: np.random.Generator) -> np.ndarray:
    atlas = _atlas()
    m = n * ss
    # anatomy is sampled at warped points; lesions are drawn at the true points
    q = pts
    for les in p.lesions:
        if les.mass_effect > 0:
            q = _pull(q, les.center, les.max_radius() * 1.2, les.mass_effect)
    if p.atrophy > 0:
        q = _pull(q, atlas.ventricle_center, 22.0, 0.55 * p.atrophy)
    vox = q - atlas.origin[:, None]

    def sample(vol):
        return ndimage.map_coordinates(vol, vox, order=1, mode="constant", cval=0.0, prefilter=False)

    gm, wm, csf, t1 = sample(atlas.gm), sample(atlas.wm), sample(atlas.csf), sample(atlas.t1)
    if p.atrophy > 0:  # sulcal widening: thin grey matter gives way to CSF
        thin = np.clip(gm - 0.5 * p.atrophy, 0.0, None) / max(1.0 - 0.5 * p.atrophy, 1e-3)
        csf = csf + (gm - thin)
        gm = thin
    ic, ig, iw, ifat = np.clip(np.array(_TISSUE[contrast]) + p.tissue_jitter, 0.02, 1.0)
    img = csf * ic + gm * ig + wm * iw
    if contrast in ("t1", "t1c"):
        img = 0.5 * img + 0.5 * t1 * (iw / 0.8)
    brain = (gm + wm + csf).reshape(m, m)
    # texture (the template is an average brain: give every patient its own fine structure)
    img = img * (1.0 + 0.05 * p.texture(pts))

    body = brain.ravel().copy()  # brain + space-occupying lesions (extra-axial ones too)
    for les in p.lesions:
        img = _draw_lesion(img, les, pts, contrast, wm, body)

    img = img.reshape(m, m)
    img = _add_head(img, body.reshape(m, m), ic, ifat, _FOV_MM / m)
    if ss > 1:
        img = img.reshape(n, ss, n, ss).mean((1, 3))
    return _scanner(img, p, rng)


def _draw_lesion(img, les: _Lesion, pts, contrast: str, wm, body: np.ndarray) -> np.ndarray:
    # cheap reject: the slice does not come near this lesion
    reach = les.max_radius() * 1.3 + 2.0
    d = pts - les.center[:, None]
    near = (np.abs(d) < reach).all(0)
    if not near.any():
        return img
    idx = np.flatnonzero(near)
    sub = pts[:, idx]
    rho = les.rho(sub)
    w = les.softness

    def inside(r):
        return 1.0 / (1.0 + np.exp(-(r - rho) / w))

    solid_i, necro_i, edema_i = _LESION[contrast]
    out = img[idx]
    tissue = out
    if les.edema > 0:
        # oedema spreads along white matter (finger-like), fades out
        ed = inside(1.0 + les.edema) * np.clip(0.3 + wm[idx], 0.0, 1.0)
        out = out * (1 - ed) + edema_i * ed
    core = inside(1.0)
    if les.kind == "fluid":
        val = np.full_like(rho, edema_i)
        if contrast in ("t1", "t1c"):
            val = val - 0.12
    elif les.kind == "blood":
        # subacute haematoma: bright on T1, dark rim on T2 (haemosiderin)
        val = {"t1": 0.85, "t1c": 0.85, "t2": 0.25, "pd": 0.45}[contrast] * np.ones_like(rho)
    else:
        val = np.full_like(rho, solid_i + les.solid_shift)
        if contrast == "t1c":
            val = val + 0.5 * les.enhance_solid
        if les.hetero > 0:
            val = val + les.hetero * les.texture(sub)
        if les.necrosis > 0:
            nec = inside(les.necrosis)
            val = val * (1 - nec) + necro_i * nec
        if les.rim > 0 and contrast == "t1c":
            shell = core - inside(1.0 - les.rim)
            val = val + 0.5 * les.enhance_rim * np.clip(shell, 0, 1)
    out = out * (1 - core) + val * core
    img = img.copy() if img is tissue else img
    img[idx] = out
    body[idx] = np.maximum(body[idx], core)
    return img


def _add_head(img: np.ndarray, body: np.ndarray, csf: float, fat: float, mm_per_px: float) -> np.ndarray:
    """Fill the skull base, then skull (dark) and scalp (fat-bright) rings around the head.

    The templates are skull-stripped; the head outline is the convex hull of brain and lesions,
    and gaps inside it (skull base, sella) get a CSF/soft-tissue mixture instead of air.
    """
    from skimage.morphology import convex_hull_image

    solid = body > 0.4
    if not solid.any():
        return img
    head = convex_hull_image(solid)
    out = img.copy()
    gap = head & ~solid
    out[gap] = np.maximum(out[gap], 0.5 * csf + 0.12)
    dist = ndimage.distance_transform_edt(~head) * mm_per_px
    skull = (dist > 0) & (dist <= 5.0)
    scalp = (dist > 5.0) & (dist <= 10.0)
    out[skull] = 0.04
    out[scalp] = fat * np.exp(-((dist[scalp] - 7.5) / 2.5) ** 2)
    return out


def _scanner(img: np.ndarray, p: _Patient, rng: np.random.Generator) -> np.ndarray:
    """Acquisition effects: bias field, resolution, contrast curve and Rician noise."""
    n = img.shape[0]
    yy, xx = np.mgrid[-1:1:complex(n), -1:1:complex(n)]
    s = 0.18 if p.scanner_shift else 0.06
    coef = rng.normal(0.0, s, 5)
    img = img * np.exp(coef[0] * xx + coef[1] * yy + coef[2] * xx * yy + coef[3] * (xx**2 - 0.33) + coef[4] * (yy**2 - 0.33))
    if p.scanner_shift:
        from ._image import _resize2d

        low = max(8, int(round(n / rng.uniform(1.2, 1.8))))
        img = _resize2d(_resize2d(img.astype(np.float32), low), n)
        img = np.clip(img, 0.0, None) ** float(np.exp(rng.uniform(np.log(0.75), np.log(1.35))))
        sigma = rng.uniform(0.02, 0.045)
    else:
        sigma = rng.uniform(0.01, 0.03)
    noisy = np.hypot(img + rng.normal(0.0, sigma, img.shape), rng.normal(0.0, sigma, img.shape))
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- public API


def _patient_rng(seed: int, task: str, shift: bool, cls_index: int, patient: int) -> np.random.Generator:
    # one independent stream per patient: a patient is the same whatever n_per_class is, and the
    # shifted (external) cohort never shares a patient with the development cohort
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, _TASK_ID[task], int(shift), cls_index, patient])


def iter_phantom(
    task: str, *, n_per_class: int, size: int, slices_per_patient: int = 4, shift: bool = False, seed: int = 0
) -> Iterator[tuple[np.ndarray, int, str, int]]:
    """Yield ``(image (size, size) float32 in [0, 1], label, patient_id, slice_index)``.

    Classes are interleaved patient by patient; each class gets exactly ``n_per_class`` images
    from ``ceil(n_per_class / slices_per_patient)`` patients.
    """
    if task not in PHANTOM_CLASSES:
        raise ValueError(f"unknown phantom task {task!r}; choose from {sorted(PHANTOM_CLASSES)}")
    classes = PHANTOM_CLASSES[task]
    ss = 2 if _FOV_MM / size > 1.5 else 1
    n_patients = math.ceil(n_per_class / slices_per_patient)
    tag = f"{task}{'-shift' if shift else ''}-s{seed}"
    for pi in range(n_patients):
        k = min(slices_per_patient, n_per_class - pi * slices_per_patient)
        for ci, cls in enumerate(classes):
            rng = _patient_rng(seed, task, shift, ci, pi)
            p = _make_patient(task, cls, shift, rng)
            offsets = rng.normal(0.0, 1.0, k) * p.focus_spread
            for si in range(k):
                contrast = p.contrast
                if contrast == "mixed":
                    contrast = str(rng.choice(["t1", "t2", "pd"]))
                pts = _slice_points(p, float(offsets[si]), size * ss)
                img = _render(p, pts, size, ss, contrast, rng)
                yield img, ci, f"{tag}-{cls}-p{pi:04d}", si


def generate(
    task: str, *, n_per_class: int = 100, size: int = 64, slices_per_patient: int = 4,
    shift: bool = False, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All phantom images at once: ``(images (N, size, size) float32, labels (N,) int64, patients (N,))``.

    ``N = n_per_class × n_classes``; deterministic for ``seed``. For the pipeline use
    ``format: phantom`` through :func:`medapt.data.prepare_dataset`, which streams.
    """
    items = list(iter_phantom(task, n_per_class=n_per_class, size=size,
                              slices_per_patient=slices_per_patient, shift=shift, seed=seed))
    return (np.stack([i[0] for i in items]), np.array([i[1] for i in items], dtype=np.int64),
            np.array([i[2] for i in items]))


@reader("phantom", version="1")
def read_phantom(spec: PhantomSpec, ctx: ReadContext) -> Source:
    """Reader for ``format: phantom``: images rendered at ``ctx.image_size``."""
    classes = PHANTOM_CLASSES[spec.task]

    def items():
        for img, label, patient, si in iter_phantom(
            spec.task, n_per_class=spec.n_per_class, size=ctx.image_size,
            slices_per_patient=spec.slices_per_patient, shift=spec.shift, seed=spec.seed,
        ):
            yield Record(image=img, id=f"{patient}-{si}", label=label, source="phantom",
                         patient=patient, slice=si, value_range=(0.0, 1.0))

    return Source(classes=list(classes), task_type="binary" if len(classes) == 2 else "multiclass",
                  items=items())
