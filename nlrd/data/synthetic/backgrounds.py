"""Backgrounds behind the synthetic people: procedural canvases and real photographs.

- :class:`BackgroundBank` holds real images, loaded once per process and cached: equirectangular
  HDR panoramas (tone-mapped to 8 bit, with a light estimate: key direction, key colour and
  ambient tint) and ordinary photos. Point it at any folder; by default it reads
  ``<data root>/backgrounds`` (Poly Haven HDRIs and Kodak scenes).
- A *view* renders the background of one frame for a camera ``(R, K)``:
  :class:`PanoramaView` is a true perspective crop of a panorama with the same rotation and
  intrinsics as the body's camera (so a camera looking down sees more floor and a drifting clip
  camera pans across the scene); :class:`CanvasView` crops a flat image (photo or procedural
  canvas) and pans it by the camera's rotation relative to the first frame.

Images are uint8 RGB (H, W, 3). World directions use the pose's axes (x right, y down, z forward).
"""

from __future__ import annotations

import colorsys
import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from nlrd.data.paths import default_data_root
from nlrd.data.synthetic.threads import opencv_single_threaded

PANORAMA_SUFFIXES = (".hdr", ".exr")
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


# ----------------------------------------------------------------------------- real images
def tonemap(hdr_rgb: np.ndarray, key: float = 0.2) -> np.ndarray:
    """Reinhard tone mapping of a linear HDR image (H, W, 3) float -> uint8 sRGB-like (H, W, 3).

    Exposure is set from the log-average luminance (every scene ends up normally exposed, as a
    camera's auto exposure would do); the white point is the 99.5th luminance percentile.
    """
    rgb = np.maximum(np.asarray(hdr_rgb, dtype=np.float32), 0.0)
    lum = 0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]
    scaled = rgb * (key / float(np.exp(np.mean(np.log(lum + 1e-4)))))
    white = max(float(np.percentile(lum, 99.5)) * key / float(np.exp(np.mean(np.log(lum + 1e-4)))), 1e-3)
    mapped = scaled * (1.0 + scaled / (white * white)) / (1.0 + scaled)
    return (np.clip(mapped, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def equirect_direction(u: np.ndarray, v: np.ndarray, width: int, height: int) -> np.ndarray:
    """Panorama pixel (u, v) -> unit world direction (..., 3); the centre column looks along +z."""
    lon = (np.asarray(u, dtype=np.float64) + 0.5) / width * 2 * np.pi - np.pi
    lat = np.pi / 2 - (np.asarray(v, dtype=np.float64) + 0.5) / height * np.pi
    return np.stack([np.cos(lat) * np.sin(lon), -np.sin(lat), np.cos(lat) * np.cos(lon)], axis=-1)


@dataclass(frozen=True)
class Panorama:
    """A tone-mapped equirectangular panorama and the light it casts.

    ``image`` (Hp, Wp, 3) uint8 RGB; ``key_direction`` (3,) unit world vector towards the brightest
    region; ``key_color`` (3,) its tint (max channel 1); ``key_fraction`` the share of the scene's
    light coming from within ~25 degrees of it (high for sun, low for overcast/indoor);
    ``ambient_color`` (3,) average tint; ``sky_color`` / ``ground_color`` (3,) mean tone-mapped
    colour of the upper / lower hemisphere in [0, 1]; ``brightness`` mean tone-mapped luminance.
    """

    name: str
    image: np.ndarray
    key_direction: np.ndarray
    key_color: np.ndarray
    key_fraction: float
    ambient_color: np.ndarray
    sky_color: np.ndarray
    ground_color: np.ndarray
    brightness: float


def load_panorama(path: Path) -> Panorama:
    """Read an HDR panorama (Radiance .hdr or .exr) and estimate its lighting."""
    hdr = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
    if hdr is None:
        raise ValueError(f"cannot read panorama {str(path)!r}")
    hdr = cv2.cvtColor(hdr.astype(np.float32), cv2.COLOR_BGR2RGB)
    image = tonemap(hdr)
    # light estimate on a small copy: solid-angle weighted luminance
    small = cv2.resize(hdr, (64, 32), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 1.0)
    lum = small @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    vv, uu = np.mgrid[0:32, 0:64]
    dirs = equirect_direction(uu, vv, 64, 32)
    solid = np.cos(np.pi / 2 - (vv + 0.5) / 32 * np.pi)
    energy = lum * solid
    iy, ix = np.unravel_index(int(np.argmax(lum * (dirs[..., 1] < 0.3))), lum.shape)  # not from the floor
    key_dir = dirs[iy, ix]
    near = (dirs @ key_dir) > np.cos(np.radians(25))
    frac = float(energy[near].sum() / max(energy.sum(), 1e-9))
    kc = small[iy, ix] / max(float(small[iy, ix].max()), 1e-9)
    img_f = image.astype(np.float32) / 255.0
    w = np.cos(np.linspace(np.pi / 2, -np.pi / 2, image.shape[0]))[:, None, None]
    mean_rgb = (img_f * w).sum(axis=(0, 1)) / (w.sum() * image.shape[1])
    half = image.shape[0] // 2
    hemi = [(img_f[rows] * w[rows]).sum(axis=(0, 1)) / (w[rows].sum() * image.shape[1])
            for rows in (slice(0, half), slice(half, None))]  # fmt: skip
    return Panorama(
        name=path.stem, image=image, key_direction=key_dir.astype(np.float64),
        key_color=np.clip(kc, 0.0, 1.0).astype(np.float64), key_fraction=frac,
        ambient_color=(mean_rgb / max(float(mean_rgb.max()), 1e-6)).astype(np.float64),
        sky_color=hemi[0].astype(np.float64), ground_color=hemi[1].astype(np.float64),
        brightness=float(mean_rgb @ np.array([0.2126, 0.7152, 0.0722])),
    )  # fmt: skip


def load_photo(path: Path) -> np.ndarray:
    """Read an 8-bit photo as uint8 RGB (H, W, 3)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read image {str(path)!r}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


POOLS = ("all", "source", "target")


def _name_hash(name: str) -> bytes:
    return hashlib.sha256(name.encode("utf-8")).digest()


def split_names(names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Deterministic, balanced two-way split of file names: ``{name: "source" | "target"}``.

    The distinct names are ordered by their SHA-256 and dealt alternately to the two halves (the
    first to "source"), so each half gets half of them (the source one more when odd) and equal
    names always land in the same half.
    """
    uniq = sorted(set(names), key=lambda n: (_name_hash(n), n))
    return {n: ("source", "target")[i % 2] for i, n in enumerate(uniq)}


@dataclass(frozen=True)
class BackgroundBank:
    """Real background images: panoramas (with light estimates) and flat photos.

    ``photo_names`` are the photos' file stems (a panorama's is :attr:`Panorama.name`); a bank built
    without them names each photo by a hash of its pixels. :meth:`pool` splits the bank in two
    disjoint halves by these names.
    """

    panoramas: tuple[Panorama, ...]
    photos: tuple[np.ndarray, ...]
    photo_names: tuple[str, ...] = ()
    _pools: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.panoramas and not self.photos:
            raise ValueError("a background bank needs at least one panorama or photo")
        if self.photo_names and len(self.photo_names) != len(self.photos):
            raise ValueError(f"{len(self.photo_names)} photo names for {len(self.photos)} photos")

    def names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(panorama names, photo names): what :meth:`pool` splits on."""
        photo_names = self.photo_names or tuple("sha256:" + hashlib.sha256(np.ascontiguousarray(p).tobytes()).hexdigest()
                                                for p in self.photos)  # fmt: skip
        return tuple(p.name for p in self.panoramas), photo_names

    def pool(self, which: str) -> BackgroundBank:
        """The whole bank (``"all"``) or one of its two disjoint halves (``"source"``, ``"target"``).

        Panoramas and photos are split separately (:func:`split_names` on their names), so each half
        holds about half of each kind; the halves never share an image name. Cached per bank.
        """
        if which == "all":
            return self
        if which not in POOLS:
            raise ValueError(f"unknown background pool {which!r}; expected one of {POOLS}")
        if which not in self._pools:
            pano_names, photo_names = self.names()
            pano_side, photo_side = split_names(pano_names), split_names(photo_names)
            panos = tuple(p for p, n in zip(self.panoramas, pano_names, strict=True) if pano_side[n] == which)
            keep = [i for i, n in enumerate(photo_names) if photo_side[n] == which]
            if not panos and not keep:
                raise ValueError(f"the {which!r} half of this background bank is empty (it holds "
                                 f"{len(pano_names) + len(photo_names)} image(s)); add more backgrounds")  # fmt: skip
            self._pools[which] = BackgroundBank(panos, tuple(self.photos[i] for i in keep),
                                                tuple(photo_names[i] for i in keep))  # fmt: skip
        return self._pools[which]

    @classmethod
    def from_folders(cls, folders: str | os.PathLike[str] | list[str | os.PathLike[str]]) -> BackgroundBank:
        """Load every panorama (.hdr/.exr) and photo (.png/.jpg/...) under the folder(s), recursively.

        Cached per process by the resolved folder list, so workers and repeated calls share it.
        """
        items = [folders] if isinstance(folders, (str, os.PathLike)) else list(folders)
        return _load_bank(tuple(str(Path(f).expanduser().resolve()) for f in items))

    @classmethod
    def default(cls) -> BackgroundBank:
        """The bank under ``<data root>/backgrounds`` (see :mod:`nlrd.data.paths`)."""
        root = default_data_root() / "backgrounds"
        if not root.is_dir():
            raise ValueError(f"background folder {str(root)!r} not found; pass backgrounds=<folder> or set NLRD_DATA")
        return cls.from_folders(root)


@lru_cache(maxsize=8)
def _load_bank(folders: tuple[str, ...]) -> BackgroundBank:
    with opencv_single_threaded():
        return _read_bank(folders)


def _read_bank(folders: tuple[str, ...]) -> BackgroundBank:
    panos: list[Panorama] = []
    photos: list[np.ndarray] = []
    photo_names: list[str] = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise ValueError(f"background folder {folder!r} does not exist")
        for p in sorted(root.rglob("*")):
            suffix = p.suffix.lower()
            if suffix in PANORAMA_SUFFIXES:
                pano = load_panorama(p)
                h, w = pano.image.shape[:2]
                if abs(w / h - 2.0) < 0.05:
                    panos.append(pano)
                else:  # an HDR that is not a full panorama: use it as a flat photo
                    photos.append(pano.image)
                    photo_names.append(p.stem)
            elif suffix in PHOTO_SUFFIXES:
                photos.append(load_photo(p))
                photo_names.append(p.stem)
    if not panos and not photos:
        raise ValueError(f"no images ({PANORAMA_SUFFIXES + PHOTO_SUFFIXES}) found under {list(folders)}")
    return BackgroundBank(tuple(panos), tuple(photos), tuple(photo_names))


def resolve_bank(backgrounds: BackgroundBank | str | os.PathLike[str] | list | None) -> BackgroundBank:
    """A bank from an instance, a folder (or folders), or None for the default data folder."""
    if isinstance(backgrounds, BackgroundBank):
        return backgrounds
    if backgrounds is None:
        return BackgroundBank.default()
    return BackgroundBank.from_folders(backgrounds)


# ----------------------------------------------------------------------------- views
class BackgroundView:
    """Renders the background of one frame for a camera: ``render(R, K, size) -> (size, size, 3) uint8``."""

    def render(self, R: np.ndarray, K: np.ndarray, size: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class PanoramaView(BackgroundView):
    """Perspective crop of a panorama seen by the body's own camera; ``yaw_deg`` turns the scene."""

    def __init__(self, pano: Panorama, yaw_deg: float) -> None:
        self.pano = pano
        self.yaw = float(np.radians(yaw_deg))

    def pano_to_world(self, d: np.ndarray) -> np.ndarray:
        """(..., 3) panorama directions -> world directions (undo the view's yaw)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.stack([c * d[..., 0] - s * d[..., 2], d[..., 1], s * d[..., 0] + c * d[..., 2]], axis=-1)

    def below_horizon(self, R: np.ndarray, K: np.ndarray, pixel: np.ndarray, margin_deg: float = 2.0) -> bool:
        """Whether the camera ray through ``pixel`` (2,) points below the panorama's horizon (at the
        ground), so a shadow drawn there lands on the floor rather than on the sky or a wall."""
        ray = np.array([(pixel[0] - K[0, 2]) / K[0, 0], (pixel[1] - K[1, 2]) / K[1, 1], 1.0])
        d = np.asarray(R, dtype=np.float64).T @ ray  # y is the same in the world and the panorama
        return bool(-d[1] / np.linalg.norm(d) < -np.sin(np.radians(margin_deg)))

    def render(self, R: np.ndarray, K: np.ndarray, size: int) -> np.ndarray:
        hp, wp = self.pano.image.shape[:2]
        xs = (np.arange(size, dtype=np.float32) - K[0, 2]) / K[0, 0]
        ys = (np.arange(size, dtype=np.float32) - K[1, 2]) / K[1, 1]
        # world ray of each pixel is R^T (x, y, 1); turned into the panorama's frame by the yaw
        Rp = (self._yaw_matrix() @ np.asarray(R, dtype=np.float64).T).astype(np.float32)
        dx = Rp[0, 0] * xs[None, :] + Rp[0, 1] * ys[:, None] + Rp[0, 2]
        dy = Rp[1, 0] * xs[None, :] + Rp[1, 1] * ys[:, None] + Rp[1, 2]
        dz = Rp[2, 0] * xs[None, :] + Rp[2, 1] * ys[:, None] + Rp[2, 2]
        lon = np.arctan2(dx, dz)
        lat = np.arctan2(-dy, np.sqrt(dx * dx + dz * dz))
        map_x = ((lon / (2 * np.pi) + 0.5) * wp - 0.5).astype(np.float32)
        map_y = ((0.5 - lat / np.pi) * hp - 0.5).astype(np.float32)
        return cv2.remap(self.pano.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)

    def _yaw_matrix(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


class CanvasView(BackgroundView):
    """A window of a flat image that pans with the camera.

    The first camera ``(R0, K0)`` sees the window centred at ``centre`` (image px) with ``scale``
    image pixels per crop pixel (negative x scale mirrors the image). Later cameras shift the window
    by where the reference camera would see their optical axis.
    """

    def __init__(
        self, image: np.ndarray, centre: tuple[float, float], scale: float, mirror: bool, R0: np.ndarray, K0: np.ndarray
    ) -> None:
        self.image = image
        self.centre = centre
        self.scale = float(scale)
        self.mirror = bool(mirror)
        self.R0 = np.asarray(R0, dtype=np.float64)
        self.K0 = np.asarray(K0, dtype=np.float64)

    def render(self, R: np.ndarray, K: np.ndarray, size: int) -> np.ndarray:
        c = (size - 1) / 2.0
        # pan: the current optical axis seen by the reference camera
        axis_ref = self.R0 @ np.asarray(R, dtype=np.float64).T @ np.array([0.0, 0.0, 1.0])
        du = self.K0[0, 0] * axis_ref[0] / max(axis_ref[2], 1e-6)
        dv = self.K0[1, 1] * axis_ref[1] / max(axis_ref[2], 1e-6)
        zoom = self.K0[0, 0] / K[0, 0]
        sx = self.scale * zoom * (-1.0 if self.mirror else 1.0)
        sy = self.scale * zoom
        # inverse map dst (x, y) -> src: centre + s * (x - c) + pan
        m = np.array([[sx, 0.0, self.centre[0] - sx * c + self.scale * du * (-1.0 if self.mirror else 1.0)],
                      [0.0, sy, self.centre[1] - sy * c + self.scale * dv]], dtype=np.float64)  # fmt: skip
        return cv2.warpAffine(
            self.image, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101
        )


def photo_view(photo: np.ndarray, rng: np.random.Generator, R0: np.ndarray, K0: np.ndarray, size: int) -> CanvasView:
    """A random window (35-90% of the short side) of a photo, randomly mirrored."""
    h, w = photo.shape[:2]
    win = rng.uniform(0.35, 0.9) * min(h, w)
    cx = rng.uniform(win / 2, w - win / 2)
    cy = rng.uniform(win / 2, h - win / 2)
    return CanvasView(photo, (cx, cy), win / size, bool(rng.random() < 0.5), R0, K0)


# ----------------------------------------------------------------------------- procedural
def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 1.0), rng.uniform(0.15, 1.0))) * 255.0


def procedural_canvas(rng: np.random.Generator, size: int) -> np.ndarray:
    """A synthetic-looking background (size, size, 3) uint8: flat colour, linear or radial gradient,
    smooth noise, or one of those with random flat shapes drawn on top."""
    kind = rng.choice(["flat", "gradient", "radial", "noise", "shapes"], p=[0.15, 0.25, 0.15, 0.2, 0.25])
    c0, c1 = _random_colour(rng), _random_colour(rng)
    if kind == "flat":
        img = np.broadcast_to(c0.astype(np.float32), (size, size, 3)).copy()
    elif kind in ("gradient", "shapes"):
        ang = rng.uniform(0, 2 * np.pi)
        g = np.cos(ang) * np.arange(size)[None, :] + np.sin(ang) * np.arange(size)[:, None]
        g = ((g - g.min()) / max(float(np.ptp(g)), 1e-6)).astype(np.float32)[..., None]
        img = c0 * (1 - g) + c1 * g
    elif kind == "radial":
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        cx, cy = rng.uniform(0, size, 2)
        r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)[..., None] / (size * rng.uniform(0.5, 1.2))
        g = np.clip(r, 0, 1)
        img = c0 * (1 - g) + c1 * g
    else:
        n = int(rng.integers(3, 12))
        small = rng.uniform(0, 1, (n, n, 1)).astype(np.float32)
        g = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)[..., None]
        img = c0 * (1 - g) + c1 * g
    img = np.clip(img, 0, 255).astype(np.uint8)
    if kind == "shapes":
        for _ in range(int(rng.integers(3, 12))):
            col = tuple(int(c) for c in _random_colour(rng))
            p = rng.integers(-size // 4, size + size // 4, 4)
            shape = rng.integers(3)
            if shape == 0:
                cv2.rectangle(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), col, -1)
            elif shape == 1:
                cv2.circle(img, (int(p[0]), int(p[1])), int(rng.integers(size // 16, size // 3)), col, -1)
            else:
                cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), col, int(rng.integers(1, 8)))
    return img


def procedural_view(rng: np.random.Generator, R0: np.ndarray, K0: np.ndarray, size: int, pan_room: float = 1.0) -> CanvasView:
    """A procedural canvas as a view; ``pan_room`` > 1 makes it larger so a clip camera can pan."""
    n = int(np.ceil(size * pan_room))
    canvas = procedural_canvas(rng, n)
    return CanvasView(canvas, ((n - 1) / 2.0, (n - 1) / 2.0), 1.0, False, R0, K0)
