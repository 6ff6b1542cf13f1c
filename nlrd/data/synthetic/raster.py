"""Z-buffered triangle rasteriser with per-pixel shading and procedural cloth patterns (numba).

Two passes, both jitted: (1) every triangle writes its id and barycentric weights into the pixels it
covers when it is nearer than what is there (z-buffer on 1/z, which is linear in screen space);
(2) each covered pixel is shaded once (deferred shading, so overdraw costs no lighting): the
normal and texture coordinates are interpolated perspective-correctly, the material's pattern is
evaluated at the pixel's (u, v) in mm, and Lambert lighting from a few directional lights plus an
ambient term is applied.

Pixel convention (shared with :mod:`nlrd.data.synthetic.camera` and :mod:`nlrd.transforms`): pixel
(row i, column j) is the point x = j, y = i; the image centre is ((W-1)/2, (H-1)/2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

# Material table columns: albedo A (rgb), albedo B (rgb), pattern id, frequency (cycles per mm),
# pattern angle (radians, rotates the (u, v) plane), one spare column (0).
MAT_COLS = 10
PATTERN_SOLID = 0
PATTERN_STRIPES = 1  # bands across the part (function of v): striped shirts, rugby tops
PATTERN_CHECKS = 2
PATTERN_NOISE = 3  # smooth value noise blending A and B: heather, camouflage, denim-like
PATTERN_PLAID = 4
NUM_PATTERNS = 5


@njit(cache=True, nogil=True, fastmath=True)
def _raster_ids(px, py, iz, faces, fid, bary, zbuf):  # pragma: no cover - jitted
    """Pass 1. px, py (V,) pixel coords; iz (V,) 1/z; faces (F,3). Writes fid (H,W) int32,
    bary (H,W,2) float32 (screen-space weights of vertices 0 and 1) and zbuf (H,W) 1/z."""
    h, w = fid.shape
    for f in range(faces.shape[0]):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        x0, y0, x1, y1, x2, y2 = px[i0], py[i0], px[i1], py[i1], px[i2], py[i2]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area) < 1e-12:
            continue
        xmin = max(int(np.ceil(min(x0, min(x1, x2)))), 0)
        xmax = min(int(np.floor(max(x0, max(x1, x2)))), w - 1)
        ymin = max(int(np.ceil(min(y0, min(y1, y2)))), 0)
        ymax = min(int(np.floor(max(y0, max(y1, y2)))), h - 1)
        if xmin > xmax or ymin > ymax:
            continue
        inv = 1.0 / area
        z0, z1, z2 = iz[i0], iz[i1], iz[i2]
        for yy in range(ymin, ymax + 1):
            for xx in range(xmin, xmax + 1):
                w0 = ((x2 - x1) * (yy - y1) - (y2 - y1) * (xx - x1)) * inv
                w1 = ((x0 - x2) * (yy - y2) - (y0 - y2) * (xx - x2)) * inv
                w2 = 1.0 - w0 - w1
                if w0 < 0.0 or w1 < 0.0 or w2 < 0.0:
                    continue
                z = w0 * z0 + w1 * z1 + w2 * z2
                if z > zbuf[yy, xx]:
                    zbuf[yy, xx] = z
                    fid[yy, xx] = f
                    bary[yy, xx, 0] = w0
                    bary[yy, xx, 1] = w1


@njit(cache=True, nogil=True, fastmath=True)
def _hash2(ix, iy):  # pragma: no cover - jitted
    h = np.sin(ix * 12.9898 + iy * 78.233) * 43758.5453
    return h - np.floor(h)


@njit(cache=True, nogil=True, fastmath=True)
def _value_noise(x, y):  # pragma: no cover - jitted
    ix, iy = np.floor(x), np.floor(y)
    fx, fy = x - ix, y - iy
    fx = fx * fx * (3.0 - 2.0 * fx)
    fy = fy * fy * (3.0 - 2.0 * fy)
    a, b = _hash2(ix, iy), _hash2(ix + 1.0, iy)
    c, d = _hash2(ix, iy + 1.0), _hash2(ix + 1.0, iy + 1.0)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


@njit(cache=True, nogil=True, fastmath=True)
def _pattern(kind, u, v, freq, angle):  # pragma: no cover - jitted
    """Mix weight of colour B in [0, 1] at texture coords (u, v) mm."""
    if kind == 0:
        return 0.0
    ca, sa = np.cos(angle), np.sin(angle)
    ru = (ca * u - sa * v) * freq
    rv = (sa * u + ca * v) * freq
    if kind == 1:
        return 1.0 if rv - np.floor(rv) < 0.5 else 0.0
    if kind == 2:
        a = 1 if ru - np.floor(ru) < 0.5 else 0
        b = 1 if rv - np.floor(rv) < 0.5 else 0
        return 1.0 if a != b else 0.0
    if kind == 3:
        n = 0.65 * _value_noise(ru * 2.0, rv * 2.0) + 0.35 * _value_noise(ru * 5.0 + 17.0, rv * 5.0 + 3.0)
        return min(max((n - 0.3) * 2.5, 0.0), 1.0)
    # plaid: two thin-stripe sets
    fa = ru - np.floor(ru)
    fb = rv - np.floor(rv)
    return 0.5 * ((1.0 if fa < 0.3 else 0.0) + (1.0 if fb < 0.3 else 0.0))


@njit(cache=True, nogil=True, fastmath=True)
def _shade(
    fid, bary, faces, iz, normals, uv, face_mat, materials, light_dir, light_col, ambient, ambient_ground, up, rgb, depth
):  # pragma: no cover - jitted
    """Pass 2: fill rgb (H,W,3) float32 and depth (H,W) mm for covered pixels. The ambient light is
    a sky/ground hemisphere: ``ambient`` for normals along ``up``, ``ambient_ground`` opposite."""
    h, w = fid.shape
    nl = light_dir.shape[0]
    for yy in range(h):
        for xx in range(w):
            f = fid[yy, xx]
            if f < 0:
                continue
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            b0 = bary[yy, xx, 0]
            b1 = bary[yy, xx, 1]
            b2 = 1.0 - b0 - b1
            # perspective-correct weights: attribute/z is linear in screen space
            p0, p1, p2 = b0 * iz[i0], b1 * iz[i1], b2 * iz[i2]
            s = p0 + p1 + p2
            depth[yy, xx] = 1.0 / s
            p0 /= s
            p1 /= s
            p2 /= s
            nx = p0 * normals[i0, 0] + p1 * normals[i1, 0] + p2 * normals[i2, 0]
            ny = p0 * normals[i0, 1] + p1 * normals[i1, 1] + p2 * normals[i2, 1]
            nz = p0 * normals[i0, 2] + p1 * normals[i1, 2] + p2 * normals[i2, 2]
            nn = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-12
            nx /= nn
            ny /= nn
            nz /= nn
            u = p0 * uv[i0, 0] + p1 * uv[i1, 0] + p2 * uv[i2, 0]
            v = p0 * uv[i0, 1] + p1 * uv[i1, 1] + p2 * uv[i2, 1]
            m = face_mat[f]
            t = _pattern(int(materials[m, 6]), u, v, materials[m, 7], materials[m, 8])
            a = 0.5 + 0.5 * (nx * up[0] + ny * up[1] + nz * up[2])
            lr = ambient_ground[0] + a * (ambient[0] - ambient_ground[0])
            lg = ambient_ground[1] + a * (ambient[1] - ambient_ground[1])
            lb = ambient_ground[2] + a * (ambient[2] - ambient_ground[2])
            for k in range(nl):
                d = nx * light_dir[k, 0] + ny * light_dir[k, 1] + nz * light_dir[k, 2]
                if d > 0.0:
                    lr += d * light_col[k, 0]
                    lg += d * light_col[k, 1]
                    lb += d * light_col[k, 2]
            rgb[yy, xx, 0] = ((1.0 - t) * materials[m, 0] + t * materials[m, 3]) * lr
            rgb[yy, xx, 1] = ((1.0 - t) * materials[m, 1] + t * materials[m, 4]) * lg
            rgb[yy, xx, 2] = ((1.0 - t) * materials[m, 2] + t * materials[m, 5]) * lb


@njit(cache=True, nogil=True, fastmath=True)
def _resolve(fid, rgb, depth, s, out_rgb, out_alpha, out_depth):  # pragma: no cover - jitted
    """Box-filter s x s blocks: premultiplied colour and coverage are averaged, depth takes the min."""
    h, w = out_alpha.shape
    inv = 1.0 / (s * s)
    for i in range(h):
        for j in range(w):
            r = g = b = 0.0
            cov = 0.0
            dmin = np.inf
            for di in range(s):
                for dj in range(s):
                    y, x = i * s + di, j * s + dj
                    if fid[y, x] >= 0:
                        cov += 1.0
                        r += rgb[y, x, 0]
                        g += rgb[y, x, 1]
                        b += rgb[y, x, 2]
                        dmin = min(dmin, depth[y, x])
            out_rgb[i, j, 0] = r * inv
            out_rgb[i, j, 1] = g * inv
            out_rgb[i, j, 2] = b * inv
            out_alpha[i, j] = cov * inv
            out_depth[i, j] = dmin


@dataclass
class Lights:
    """Directional lights in the camera frame plus hemispherical ambient light.

    ``directions`` (L, 3) unit vectors from the surface towards each light; ``colors`` (L, 3)
    RGB intensities; ``ambient`` (3,) light from the sky (normals along ``up``),
    ``ambient_ground`` (3,) light bounced from the ground (normals opposite; None: same as the sky);
    ``up`` (3,) the world's up direction in the camera frame (None: -y, the image's up).
    """

    directions: np.ndarray
    colors: np.ndarray
    ambient: np.ndarray
    ambient_ground: np.ndarray | None = None
    up: np.ndarray | None = None


@dataclass
class RasterOutput:
    """What :func:`rasterize` returns at the output size (H, W).

    ``color``: (H, W, 3) float32 shaded colour premultiplied by coverage (0 where empty);
    ``alpha``: (H, W) float32 coverage in [0, 1] (fractional at edges when supersampled);
    ``depth``: (H, W) float32 camera z in mm of the nearest surface, inf where empty.
    """

    color: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray


def rasterize(
    vertices: np.ndarray,
    normals: np.ndarray,
    uv: np.ndarray,
    faces: np.ndarray,
    face_material: np.ndarray,
    materials: np.ndarray,
    lights: Lights,
    K: np.ndarray,
    size: tuple[int, int],
    supersample: int = 1,
) -> RasterOutput:
    """Render a mesh given in camera coordinates (mm, z > 0 in front) with intrinsics ``K`` (3, 3).

    Args:
        vertices, normals: (V, 3) camera frame; uv: (V, 2) mm; faces: (F, 3) int32.
        face_material: (F,) int32 row of ``materials`` (M, MAT_COLS) per face.
        size: (H, W) output size in pixels. ``supersample`` s renders at s times the size and
            box-filters down (anti-aliased edges), at about s^2 the cost.
    """
    h, w = size
    s = int(supersample)
    verts = np.asarray(vertices, dtype=np.float32)
    if np.any(verts[:, 2] <= 1.0):
        raise ValueError("rasterize: every vertex must lie in front of the camera (z > 1 mm)")
    iz = (1.0 / verts[:, 2]).astype(np.float32)
    # pixel coords at the render resolution: x_hi = s * (x + 0.5) - 0.5 keeps pixel centres aligned
    fx, fy, cx, cy = K[0, 0] * s, K[1, 1] * s, s * (K[0, 2] + 0.5) - 0.5, s * (K[1, 2] + 0.5) - 0.5
    px = (fx * verts[:, 0] * iz + cx).astype(np.float32)
    py = (fy * verts[:, 1] * iz + cy).astype(np.float32)
    hh, ww = h * s, w * s
    fid = np.full((hh, ww), -1, dtype=np.int32)
    bary = np.zeros((hh, ww, 2), dtype=np.float32)
    zbuf = np.zeros((hh, ww), dtype=np.float32)
    _raster_ids(px, py, iz, faces, fid, bary, zbuf)
    rgb = np.zeros((hh, ww, 3), dtype=np.float32)
    depth = np.full((hh, ww), np.inf, dtype=np.float32)
    _shade(
        fid,
        bary,
        faces,
        iz,
        np.asarray(normals, dtype=np.float32),
        np.asarray(uv, dtype=np.float32),
        np.asarray(face_material, dtype=np.int32),
        np.asarray(materials, dtype=np.float32),
        np.asarray(lights.directions, dtype=np.float32).reshape(-1, 3),
        np.asarray(lights.colors, dtype=np.float32).reshape(-1, 3),
        np.asarray(lights.ambient, dtype=np.float32),
        np.asarray(lights.ambient if lights.ambient_ground is None else lights.ambient_ground, dtype=np.float32),
        np.asarray((0.0, -1.0, 0.0) if lights.up is None else lights.up, dtype=np.float32),
        rgb,
        depth,
    )
    if s == 1:
        return RasterOutput(rgb, (fid >= 0).astype(np.float32), depth)
    out_rgb = np.empty((h, w, 3), dtype=np.float32)
    out_alpha = np.empty((h, w), dtype=np.float32)
    out_depth = np.empty((h, w), dtype=np.float32)
    _resolve(fid, rgb, depth, s, out_rgb, out_alpha, out_depth)
    return RasterOutput(out_rgb, out_alpha, out_depth)
