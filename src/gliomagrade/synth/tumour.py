"""One glioma per subject: grade-dependent parameter distributions, shape, sub-regions, mass effect.

Parameters are drawn from per-grade distributions that overlap on purpose (table in
docs/synthetic_cohort.md); ``difficulty`` pulls every grade towards the pooled value so that no single
feature separates the grades. The tumour is rendered in template space as partial-volume fractions of
its sub-regions plus a BraTS label map; surrounding tissue is pushed outwards (mass effect).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from gliomagrade.synth.anatomy import Anatomy

# name: (WHO II, WHO III, WHO IV) means, and the spread of each draw (see draw_parameter)
GRADE_TABLE: dict[str, tuple[tuple[float, float, float], float]] = {
    "radius_mm": ((17.0, 17.0, 18.5), 0.25),  # log-normal sigma
    "p_enhancing": ((0.12, 0.45, 0.88), 0.0),
    "enhancing_coverage": ((0.25, 0.45, 0.70), 6.0),  # Beta concentration
    "enhancement_ratio": ((1.25, 1.40, 1.60), 0.15),  # normal sd; t1ce enhancing / white matter
    "p_necrosis": ((0.03, 0.15, 0.72), 0.0),
    "necrosis_fraction": ((0.30, 0.35, 0.50), 0.10),  # normal sd; of the core radius
    "oedema_extent": ((1.20, 1.40, 1.85), 0.18),  # log-normal sigma; oedema radius / core radius
    "heterogeneity": ((0.06, 0.07, 0.08), 0.02),  # normal sd; texture amplitude inside the tumour
    "irregularity": ((0.18, 0.21, 0.24), 0.05),  # normal sd; amplitude of the shape noise
    "mass_effect": ((0.18, 0.20, 0.26), 0.08),  # normal sd; peak displacement / core radius
    "p_haemorrhage": ((0.20, 0.20, 0.20), 0.0),  # T1-bright blood: a confounder on t1ce alone
    # T2-FLAIR mismatch (IDH-mutant astrocytoma): homogeneous T2-bright core that FLAIR suppresses except
    # at its rim (Patel et al., Clin Cancer Res 2017); seen only by comparing T2 with FLAIR
    "p_mismatch": ((0.45, 0.30, 0.0), 0.0),
}
MISMATCH_HETEROGENEITY = 0.4
"""Texture factor of a mismatch tumour (its T2 signal is homogeneous)."""
GRADES = (2, 3, 4)
PV_SIGMA_MM = 0.7
"""Partial-volume blur of sub-region edges."""


def grade_mean(name: str, who_grade: int, difficulty: float) -> float:
    """Mean of parameter ``name`` for ``who_grade``, pulled towards the pooled mean by ``difficulty``."""
    values, _ = GRADE_TABLE[name]
    pooled = float(np.mean(values))
    return (1.0 - difficulty) * values[GRADES.index(who_grade)] + difficulty * pooled


@dataclass
class TumourParams:
    """Everything drawn for one tumour (recorded in the ground-truth JSON)."""

    who_grade: int
    center_mm: list[float]
    radius_mm: float
    axes: list[float]
    rotation_deg: list[float]
    irregularity: float
    enhancing: bool
    enhancing_coverage: float
    enhancement_ratio: float
    necrosis: bool
    necrosis_fraction: float
    oedema_extent: float
    haemorrhage: bool
    mismatch: bool
    heterogeneity: float
    mass_effect: float

    def to_dict(self) -> dict:
        return asdict(self)


def draw_parameter(name: str, who_grade: int, difficulty: float, rng: np.random.Generator) -> float:
    """One draw of a table parameter (distribution family chosen by the parameter's role)."""
    mean = grade_mean(name, who_grade, difficulty)
    spread = GRADE_TABLE[name][1]
    if name.startswith("p_"):
        return float(rng.random() < mean)
    if name in ("radius_mm", "oedema_extent"):
        return float(mean * np.exp(rng.normal(0.0, spread)))
    if name == "enhancing_coverage":
        return float(rng.beta(mean * spread, (1.0 - mean) * spread))
    return float(rng.normal(mean, spread))


def sample_tumour(anatomy: Anatomy, who_grade: int, difficulty: float, rng: np.random.Generator) -> TumourParams:
    """Draw one tumour's parameters for ``who_grade`` and a plausible centre in supratentorial WM."""
    d = {name: draw_parameter(name, who_grade, difficulty, rng) for name in GRADE_TABLE}
    radius = float(np.clip(d["radius_mm"], 7.0, 28.0))
    center, radius = _pick_center(anatomy, radius, rng)
    return TumourParams(
        who_grade=who_grade,
        center_mm=[float(v) for v in center],
        radius_mm=radius,
        axes=[float(v) for v in rng.uniform(0.75, 1.25, 3)],
        rotation_deg=[float(v) for v in rng.uniform(-90.0, 90.0, 3)],
        irregularity=float(np.clip(d["irregularity"], 0.05, 0.45)),
        enhancing=bool(d["p_enhancing"]),
        enhancing_coverage=float(np.clip(d["enhancing_coverage"], 0.05, 0.95)),
        enhancement_ratio=float(np.clip(d["enhancement_ratio"], 1.1, 2.2)),
        necrosis=bool(d["p_necrosis"]),
        necrosis_fraction=float(np.clip(d["necrosis_fraction"], 0.15, 0.75)),
        oedema_extent=float(np.clip(d["oedema_extent"], 1.05, 2.4)),
        haemorrhage=bool(d["p_haemorrhage"]),
        mismatch=bool(d["p_mismatch"]),
        heterogeneity=float(np.clip(d["heterogeneity"], 0.01, 0.2)) * (MISMATCH_HETEROGENEITY if d["p_mismatch"] else 1.0),
        mass_effect=float(np.clip(d["mass_effect"], 0.0, 0.5)),
    )


def _pick_center(anatomy: Anatomy, radius: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A white-matter point deep enough for the core, above the tentorium; shrink the core if needed."""
    spacing = anatomy.spacing
    origin_z = anatomy.reference.GetOrigin()[2]
    z_mm = origin_z + spacing * np.arange(anatomy.brain.shape[0])
    supratentorial = (z_mm > anatomy.brain_center[2] - 15.0)[:, None, None]
    for r in (radius, 0.8 * radius, 0.6 * radius, 7.0):
        candidates = np.flatnonzero((anatomy.wm > 0.5) & (anatomy.depth_mm >= max(8.0, 0.6 * r)) & supratentorial)
        if candidates.size:
            flat = int(rng.choice(candidates))
            index = np.unravel_index(flat, anatomy.brain.shape)[::-1]  # x, y, z
            jitter = rng.uniform(-0.5, 0.5, 3) * spacing
            point = np.asarray(anatomy.reference.TransformIndexToPhysicalPoint([int(i) for i in index])) + jitter
            return point, float(r)
    raise RuntimeError("no white-matter voxel deep enough for a tumour centre (template grid too coarse?)")


def smooth_noise(shape: tuple[int, ...], cell: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-sd random field varying over ~``cell`` voxels.

    White noise on a grid ~3x coarser than ``cell`` is Gaussian-smoothed there and linearly up-sampled
    (separable, cheap): smooth at the scale of ``cell`` without a full-resolution spline.
    """
    factor = max(1.0, cell / 3.0)
    coarse_shape = tuple(int(np.ceil(s / factor)) + 2 for s in shape)
    coarse = rng.standard_normal(coarse_shape, dtype=np.float32)
    coarse = ndimage.gaussian_filter(coarse, sigma=max(0.5, cell / factor / 2.0), mode="wrap")
    field = resize_linear(coarse, shape)
    field -= field.mean()
    return field / max(float(field.std()), 1e-6)


def resize_linear(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Separable linear interpolation of ``array`` to ``shape`` (corners aligned)."""
    out = array.astype(np.float32, copy=False)
    for axis, n in enumerate(shape):
        m = out.shape[axis]
        if m == n:
            continue
        pos = np.linspace(0.0, m - 1.0, n, dtype=np.float32)
        lo = np.minimum(np.floor(pos).astype(int), m - 2) if m > 1 else np.zeros(n, int)
        w = (pos - lo).astype(np.float32)
        view = [None] * out.ndim
        view[axis] = slice(None)
        w = w[tuple(view)]
        hi = np.minimum(lo + 1, m - 1)
        out = np.take(out, lo, axis=axis) * (1.0 - w) + np.take(out, hi, axis=axis) * w
    return out


@dataclass
class TumourMaps:
    """Rendered tumour inside a box of the template grid: fractions, labels, deformed tissue, texture."""

    box: tuple[slice, slice, slice]
    fractions: dict[str, np.ndarray]
    """necrosis, net (non-enhancing tumour), enhancing, haemorrhage, oedema: partial-volume fractions."""
    labels: np.ndarray
    """BraTS labels in the box (0, 1, 2, 4)."""
    tissue: dict[str, np.ndarray]
    """gm, wm, csf after mass effect, in the box."""
    texture: np.ndarray
    """Zero-mean, unit-sd field for the tumour's intensity heterogeneity."""


def _box(anatomy: Anatomy, t: TumourParams) -> tuple[tuple[slice, slice, slice], list[np.ndarray]]:
    """Box (z, y, x slices) around the tumour large enough for oedema and mass effect, and its mm offsets."""
    half = t.radius_mm * max(1.25 * t.oedema_extent * max(t.axes) * (1 + 2.5 * t.irregularity), 3.0) + 3.0
    centre_idx = np.asarray(anatomy.reference.TransformPhysicalPointToContinuousIndex(t.center_mm))[::-1]
    shape = anatomy.brain.shape
    box = tuple(
        slice(max(0, int(np.floor(c - half / anatomy.spacing))), min(n, int(np.ceil(c + half / anatomy.spacing)) + 1))
        for c, n in zip(centre_idx, shape, strict=True)
    )
    offsets = [
        ((np.arange(s.start, s.stop) - c) * anatomy.spacing).astype(np.float32)
        for s, c in zip(box, centre_idx, strict=True)
    ]
    return box, offsets  # type: ignore[return-value]


def _rotation(angles_deg: list[float]) -> np.ndarray:
    """Rotation matrix from three angles (x, then y, then z), in degrees."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def render_tumour(anatomy: Anatomy, t: TumourParams, rng: np.random.Generator) -> TumourMaps:
    """Render sub-region fractions, BraTS labels and the mass-effect-deformed tissue around the tumour."""
    box, (oz, oy, ox) = _box(anatomy, t)
    shape = (oz.size, oy.size, ox.size)
    vox = anatomy.spacing
    xyz = [ox[None, None, :], oy[None, :, None], oz[:, None, None]]  # (x, y, z) mm offsets over the box
    rho = _ellipsoid_radius(t, xyz)
    cell = t.radius_mm / vox * 0.7
    noise = {
        "shape": np.clip(smooth_noise(shape, cell, rng), -2.5, 2.5),
        "oedema": np.clip(smooth_noise(shape, cell * 1.3, rng), -2.5, 2.5),
        "necrosis": smooth_noise(shape, cell * 0.5, rng),
        "patches": smooth_noise(shape, cell * 0.35, rng),
    }
    texture = smooth_noise(shape, max(1.0, 3.0 / vox), rng)
    brain = anatomy.brain[box] > 0
    masks = _core_regions(rho, noise, brain, t, vox, rng)
    tissue = _mass_effect(anatomy, box, xyz, t)
    wm_affinity = np.clip((tissue["wm"] + 0.35 * tissue["gm"]) * 1.6, 0.0, 1.0)
    oedema_zone = rho < t.oedema_extent * (1.0 + t.irregularity * noise["oedema"])
    masks["oedema"] = oedema_zone & ~masks.pop("core") & brain & (wm_affinity > 0.5)

    sigma = PV_SIGMA_MM / vox
    fractions = {name: ndimage.gaussian_filter(m.astype(np.float32), sigma) * brain for name, m in masks.items()}
    fractions["oedema"] *= wm_affinity
    labels = np.zeros(shape, np.uint8)
    labels[masks["oedema"]] = 2
    labels[masks["necrosis"] | masks["net"] | masks["haemorrhage"]] = 1
    labels[masks["enhancing"]] = 4
    return TumourMaps(box, fractions, labels, tissue, texture)


def _ellipsoid_radius(t: TumourParams, xyz: list[np.ndarray]) -> np.ndarray:
    """Normalised ellipsoidal radius (1 on the undeformed core surface) at the (x, y, z) offsets."""
    rot = _rotation(t.rotation_deg).T
    local = [sum(rot[i, j] * xyz[j] for j in range(3)) for i in range(3)]
    return np.sqrt(sum((local[i] / (t.radius_mm * t.axes[i])) ** 2 for i in range(3))).astype(np.float32)


def _core_regions(
    rho: np.ndarray, noise: dict[str, np.ndarray], brain: np.ndarray, t: TumourParams, vox: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Disjoint masks of the tumour core's sub-regions (plus the whole ``core``)."""
    core = (rho < 1.0 + t.irregularity * noise["shape"]) & brain
    necrosis = core & t.necrosis & (rho < t.necrosis_fraction * (1.0 + 0.5 * t.irregularity * noise["necrosis"]))
    solid = core & ~necrosis
    enhancing = np.zeros_like(core)
    if t.enhancing and solid.any():  # patchy: the top ``coverage`` share of a noise field over the solid part
        cut = np.quantile(noise["patches"][solid], 1.0 - t.enhancing_coverage)
        enhancing = solid & (noise["patches"] >= cut)
    haemorrhage = np.zeros_like(core)
    if t.haemorrhage and core.any():  # a blob around a random core voxel
        seed_idx = np.argwhere(core)[rng.integers(int(core.sum()))]
        zz, yy, xx = np.ogrid[: core.shape[0], : core.shape[1], : core.shape[2]]
        dist = vox * np.sqrt((zz - seed_idx[0]) ** 2 + (yy - seed_idx[1]) ** 2 + (xx - seed_idx[2]) ** 2)
        haemorrhage = core & (dist < t.radius_mm * rng.uniform(0.15, 0.3))
    return {
        "necrosis": necrosis & ~haemorrhage,
        "net": solid & ~enhancing & ~haemorrhage,
        "enhancing": enhancing & ~haemorrhage,
        "haemorrhage": haemorrhage,
        "core": core,
    }


def _mass_effect(
    anatomy: Anatomy, box: tuple[slice, slice, slice], xyz: list[np.ndarray], t: TumourParams
) -> dict[str, np.ndarray]:
    """Push tissue away from the tumour centre: sample tissue at x - m(r) * (x - c) / |x - c|."""
    r = np.sqrt(sum(a**2 for a in xyz)).astype(np.float32)
    radius = t.radius_mm
    peak = t.mass_effect * radius
    m = peak * np.minimum(r / radius, 1.0) * np.exp(-((np.maximum(r - radius, 0.0) / radius) ** 2))
    scale = np.where(r > 1e-3, m / np.maximum(r, 1e-3), 0.0)
    centre_zyx = np.asarray(anatomy.reference.TransformPhysicalPointToContinuousIndex(t.center_mm))[::-1]
    # xyz holds (x, y, z) offsets; array axes are (z, y, x)
    coords = [centre_zyx[axis] + xyz[2 - axis] * (1.0 - scale) / anatomy.spacing for axis in range(3)]
    brain = anatomy.brain[box]
    return {
        name: ndimage.map_coordinates(getattr(anatomy, name), coords, order=1, mode="nearest") * brain
        for name in ("gm", "wm", "csf")
    }
