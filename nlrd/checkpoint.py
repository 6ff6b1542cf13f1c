"""Checkpoints: safetensors weights plus JSON metadata. No pickle anywhere, so files from strangers are safe.

A checkpoint is one ``.safetensors`` file. Its header metadata (a string -> string map in the
safetensors format) holds one JSON document under the key ``"nlrd"``::

    {"format_version": 1, "stage": "pose_aae", "config": {...}, "skeleton": "h36m_17",
     "data_sources": [{"name": ..., "licence": ...}], "metrics": {...}, "created": "2025-...Z",
     "torch_version": "2.x", "extra": {...}}

The same document is written next to it as a human-readable sidecar ``<path>.json``; loading never
needs the sidecar (the header is the source of truth). Tensor names of a dict of modules are prefixed
with the module's key (``encoder.``, ``decoder.``...). Saving is atomic (temporary file +
``os.replace``), so an interrupted save leaves either the old file or the new one, never half a file.

Loading is strict: a missing file, a file over :data:`MAX_CHECKPOINT_BYTES`, a file that is not
safetensors (a pickle or zip renamed, random or truncated bytes), missing metadata or metadata fields of
the wrong type, an unknown format version, a wrong stage, and (in :func:`load_into`) missing or
unexpected keys and wrong shapes are all ``ValueError``\\ s that name the file and the problem. The
header is checked before the tensor data is read, and :func:`build_checked` compares a model's shapes
with the file's on PyTorch's meta device before allocating it, so no file, whatever its size or config,
costs more than its own bytes (configs themselves are checked by :func:`nlrd.priors.config_from_dict`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import struct
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import nn

FORMAT_VERSION = 1
METADATA_KEY = "nlrd"
SIDECAR_SUFFIX = ".json"

# Upper bound on the JSON header of a safetensors file (the reference implementation uses 100 MB);
# anything larger means the first 8 bytes are not a safetensors header length.
_MAX_HEADER_BYTES = 100_000_000
# Upper bound on a whole checkpoint file: the project's models are 2-12 MB; anything near this size is
# not one of them, and is refused before its bytes are read.
MAX_CHECKPOINT_BYTES = 1 << 30
# Key prefixes added by wrappers that must not leak into saved names: DistributedDataParallel /
# DataParallel (``module.``) and torch.compile (``_orig_mod.``).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_REQUIRED_META = ("format_version", "stage", "config", "skeleton")
_DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        tensors: flat name -> tensor map (names as saved, e.g. ``"encoder.fc1.weight"``).
        meta: the ``"nlrd"`` metadata document (see module docstring).
        path: the file it came from.
    """

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path | None = None

    @property
    def stage(self) -> str:
        return str(self.meta["stage"])

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.meta.get("metrics") or {}

    def prefixes(self) -> list[str]:
        """Sorted first name components (e.g. ``["decoder", "encoder"]``) of the saved tensors."""
        return sorted({k.split(".", 1)[0] for k in self.tensors})

    def subset(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors under ``prefix`` (``"encoder"`` or ``"encoder."``) with the prefix removed."""
        prefix = _normalise_prefix(prefix)
        return {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor] | nn.Module | Mapping[str, nn.Module],
    *,
    stage: str,
    config: Any,
    skeleton: str = "h36m_17",
    data_sources: list[dict] | None = None,
    metrics: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write tensors and metadata to ``path`` (safetensors) and ``<path>.json`` (sidecar), atomically.

    Args:
        path: destination file, conventionally ``*.safetensors``; parent folders are created.
        tensors: a name -> tensor dict, a module (its ``state_dict()``), or a name -> module dict
            whose state dicts are flattened as ``"<name>.<key>"``. DDP ``module.`` and torch.compile
            ``_orig_mod.`` wrappers are removed. Tensors are stored on CPU, contiguous.
        stage: the training stage that produced the weights (e.g. ``"pose_aae"``).
        config: the resolved stage/model configuration; a dataclass (converted with ``asdict``) or a
            JSON-serialisable dict.
        skeleton: skeleton name (see ``nlrd.skeleton.get_skeleton``).
        data_sources: training data, each a dict with at least ``"name"`` and ``"licence"`` strings
            (``"license"`` is accepted and renamed).
        metrics: evaluation numbers (non-finite floats are stored as null).
        extra: anything else JSON-serialisable.

    Returns:
        The path written.
    """
    path = Path(path)
    if not isinstance(stage, str) or not stage:
        raise ValueError(f"stage must be a non-empty string, got {stage!r}")
    flat = _flatten_tensors(tensors)
    meta = {
        "format_version": FORMAT_VERSION,
        "stage": stage,
        "config": _jsonable(config, "config"),
        "skeleton": str(skeleton),
        "data_sources": _check_data_sources(data_sources),
        "metrics": _jsonable(metrics or {}, "metrics"),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "torch_version": torch.__version__,
        "extra": _jsonable(extra or {}, "extra"),
    }
    meta_json = json.dumps(meta, allow_nan=False, sort_keys=True)
    try:
        payload = _st_save(flat, metadata={METADATA_KEY: meta_json})
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ValueError(f"cannot serialise checkpoint {path}: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, payload)
    _atomic_write(sidecar_path(path), (json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n").encode())
    return path


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a checkpoint: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _atomic_write(path: Path, data: bytes) -> None:
    # Write into the same folder (os.replace is only atomic within one file system), flush to disk,
    # then rename over the destination.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _unwrap(module: nn.Module) -> nn.Module:
    """Strip DDP / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


def _strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Only strip a prefix that every key carries: a real submodule called "module" in an unwrapped
    # network must keep its name.
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def _flatten_tensors(obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        state = _strip_wrapper_prefixes(dict(_unwrap(obj).state_dict()))
    elif isinstance(obj, Mapping):
        state = {}
        for name, value in obj.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"checkpoint tensor/module names must be non-empty strings, got {name!r}")
            if isinstance(value, nn.Module):
                sub = _strip_wrapper_prefixes(dict(_unwrap(value).state_dict()))
                for key, tensor in sub.items():
                    state[f"{name}.{key}"] = tensor
            elif isinstance(value, torch.Tensor):
                state[name] = value
            else:
                raise ValueError(f"checkpoint entry {name!r} must be a torch.Tensor or nn.Module, got {type(value)}")
        state = _strip_wrapper_prefixes(state)
    else:
        raise ValueError(f"tensors must be a dict of tensors, an nn.Module or a dict of modules, got {type(obj)}")
    # clone(): safetensors refuses tensors that share storage (tied weights, views); contiguous CPU
    # copies are always storable.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _check_data_sources(sources: list[dict] | None) -> list[dict]:
    out = []
    for i, src in enumerate(sources or []):
        if not isinstance(src, Mapping):
            raise ValueError(f"data_sources[{i}] must be a dict with 'name' and 'licence', got {type(src)}")
        src = dict(src)
        if "licence" not in src and "license" in src:
            src["licence"] = src.pop("license")
        for key in ("name", "licence"):
            if not isinstance(src.get(key), str) or not src[key]:
                raise ValueError(f"data_sources[{i}] needs a non-empty string {key!r}, got {src.get(key)!r}")
        out.append(_jsonable(src, f"data_sources[{i}]"))
    return out


def _jsonable(value: Any, where: str) -> Any:
    """Convert configs/metrics to plain JSON types (dataclasses, tuples, Paths, numpy/torch scalars)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value), where)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _jsonable(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        return _jsonable(arr.tolist(), where)
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where)
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        # JSON has no NaN/Infinity; a diverged metric is recorded as null rather than failing the save.
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ValueError(f"{where}: value of type {type(value).__name__} is not JSON-serialisable")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _parse_header(path: Path, head: bytes, file_size: int) -> dict[str, Any]:
    """Validate the safetensors header; ``head`` holds at least the first 8 + header-length bytes."""
    if file_size < 8:
        raise ValueError(f"{path}: not a safetensors file ({file_size} bytes, too short for a header)")
    (n,) = struct.unpack("<Q", head[:8])
    if n == 0 or n > _MAX_HEADER_BYTES or 8 + n > file_size:
        raise ValueError(
            f"{path}: not a safetensors file ({_guess_format(head)}header length {n} does not fit a file of {file_size} bytes)"
        )
    raw = head[8 : 8 + n]
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a safetensors file ({_guess_format(head)}header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (header is a JSON {type(header).__name__}, not an object)")
    # Every tensor's byte range must lie inside the data section: this catches truncated files with a
    # clear message before the reader sees them.
    data_size = file_size - 8 - n
    needed = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = (int(v) for v in info["data_offsets"])
            count = math.prod(int(d) for d in info["shape"])
            item = _DTYPE_SIZES.get(info["dtype"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: not a safetensors file (malformed header entry for {name!r})") from None
        if item is not None and end - start != count * item:
            raise ValueError(
                f"{path}: corrupt safetensors header (tensor {name!r} has {end - start} bytes, "
                f"shape {info['shape']} {info['dtype']} needs {count * item})"
            )
        needed = max(needed, end)
    if needed > data_size:
        raise ValueError(
            f"{path}: truncated checkpoint (tensor data needs {needed} bytes after the header, file has {data_size})"
        )
    return header


def _guess_format(head: bytes) -> str:
    """A hint for common wrong files, ending with '; ' (or empty)."""
    if head.startswith(b"PK\x03\x04"):
        return "looks like a zip archive, e.g. a torch.save/pickle checkpoint, which nlrd never loads; "
    if head[:1] == b"\x80":
        return "looks like a Python pickle, which nlrd never loads; "
    if head[:1] in (b"{", b"["):
        return "looks like JSON text (the sidecar?); "
    return ""


def _meta_from_header(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    meta_map = header.get("__metadata__") or {}
    if not isinstance(meta_map, dict) or METADATA_KEY not in meta_map:
        raise ValueError(
            f"{path}: safetensors file has no {METADATA_KEY!r} metadata (not written by nlrd.checkpoint.save_checkpoint)"
        )
    try:
        meta = json.loads(meta_map[METADATA_KEY])
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: {METADATA_KEY!r} metadata is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: {METADATA_KEY!r} metadata must be a JSON object, got {type(meta).__name__}")
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"{path}: {METADATA_KEY!r} metadata lacks {missing}")
    kinds = {"stage": str, "config": dict, "skeleton": str, "data_sources": list, "metrics": dict, "extra": dict}
    wrong = [f"{k} ({type(meta[k]).__name__}, expected {t.__name__})" for k, t in kinds.items()
             if k in meta and (meta[k] is not None or k in _REQUIRED_META) and not isinstance(meta[k], t)]  # fmt: skip
    if wrong:
        raise ValueError(f"{path}: {METADATA_KEY!r} metadata has fields of the wrong type: {', '.join(wrong)}")
    version = meta["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path}: unknown checkpoint format_version {version!r} (expected an int 1..{FORMAT_VERSION})")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format_version {version} is newer than this nlrd supports ({FORMAT_VERSION}); upgrade nlrd"
        )
    return meta


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise ValueError(f"checkpoint path is not a file: {path}")
    return path


def _read_header(path: Path, fh: BinaryIO, size: int) -> tuple[bytes, dict[str, Any]]:
    """The first 8 + header-length bytes of an open checkpoint, and its validated header."""
    head = fh.read(8)
    if len(head) == 8:
        (n,) = struct.unpack("<Q", head)
        if 0 < n <= _MAX_HEADER_BYTES and 8 + n <= size:
            head += fh.read(n)
    return head, _parse_header(path, head, size)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``"nlrd"`` metadata of a checkpoint, reading only its header (cheap for large files)."""
    path = _existing_file(path)
    with path.open("rb") as fh:
        _, header = _read_header(path, fh, path.stat().st_size)
    return _meta_from_header(path, header)


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    *,
    expected_stage: str | None = None,
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`.

    The header is read and checked first (its JSON, every tensor's byte range, the metadata, the
    stage), and only then the tensor data: a file that is not a checkpoint of the expected kind
    costs a few bytes of reading, whatever its size.

    Args:
        path: the ``.safetensors`` file.
        map_location: device for the tensors (``"cpu"``, ``"cuda:0"``, a ``torch.device``).
        expected_stage: if given, the checkpoint's stage must equal it.
        max_bytes: larger files are refused before anything is read (the project's models are a few MB).

    Raises:
        ValueError: the file is missing, larger than ``max_bytes``, not safetensors
            (pickle/zip/random/empty/truncated), has no ``"nlrd"`` metadata, an unknown or newer
            ``format_version``, or the wrong stage.
    """
    path = _existing_file(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path}: file is {size / 2**20:.0f} MB; a checkpoint of this project is at most "
                         f"{max_bytes / 2**20:.0f} MB")  # fmt: skip
    # One open file for header and data, read once (no memory map keeps the file open, which would block
    # replacing it on some systems); the data only after the header has been validated.
    with path.open("rb") as fh:
        head, header = _read_header(path, fh, size)
        meta = _meta_from_header(path, header)
        if expected_stage is not None and meta["stage"] != expected_stage:
            raise ValueError(f"{path}: checkpoint is from stage {meta['stage']!r}, expected {expected_stage!r}")
        data = head + fh.read(size - len(head))
    if len(data) != size:
        raise ValueError(f"{path}: the file changed while it was read ({len(data)} of {size} bytes)")
    try:
        tensors = _st_load(data)
    except SafetensorError as exc:
        raise ValueError(f"{path}: corrupt safetensors file: {exc}") from None
    device = torch.device(map_location)
    if device.type != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return Checkpoint(tensors=tensors, meta=meta, path=path)


def _normalise_prefix(prefix: str) -> str:
    return prefix if not prefix or prefix.endswith(".") else prefix + "."


def _describe(names: list[str], shapes: Mapping[str, Any], limit: int = 5) -> str:
    shown = ", ".join(f"{n} {tuple(shapes[n])}" for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return shown + more


def model_config(ckpt: Checkpoint) -> dict[str, Any]:
    """The ``config.model`` dict of a checkpoint's metadata; ValueError naming the file when absent."""
    cfg = ckpt.meta.get("config", {}) if isinstance(ckpt.meta, dict) else {}
    model = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(model, dict):
        raise ValueError(f"{ckpt.path or 'checkpoint'}: metadata has no config.model (not a model checkpoint of this project?)")
    return model


def _mismatches(target: nn.Module, ckpt: Checkpoint, prefix: str) -> tuple[str, dict[str, torch.Tensor]]:
    """Where the tensors come from (for messages) and the tensors under ``prefix``; ValueError listing missing
    keys, unexpected keys and shape mismatches between ``target``'s state and them (first few, with shapes)."""
    prefix = _normalise_prefix(prefix)
    source = ckpt.subset(prefix)
    expected = target.state_dict()
    where = f"{ckpt.path or 'checkpoint'}" + (f" (prefix {prefix!r})" if prefix else "")
    if not source:
        raise ValueError(f"{where}: no tensors under this prefix; prefixes present: {ckpt.prefixes()}")
    # Listed in the model's (or the file's) order, so the first names shown are the first layers.
    missing = [k for k in expected if k not in source]
    unexpected = [k for k in source if k not in expected]
    wrong = [k for k in expected if k in source and tuple(expected[k].shape) != tuple(source[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_describe(missing, {k: expected[k].shape for k in missing})}")
    if unexpected:
        shapes = {k: source[k].shape for k in unexpected}
        problems.append(f"{len(unexpected)} unexpected key(s): {_describe(unexpected, shapes)}")
    if wrong:
        shown = ", ".join(f"{k} checkpoint {tuple(source[k].shape)} vs model {tuple(expected[k].shape)}" for k in wrong[:5])
        more = f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""
        problems.append(f"{len(wrong)} shape mismatch(es): {shown}{more}")
    if problems:
        raise ValueError(f"{where} does not match {type(target).__name__}: " + "; ".join(problems))
    return where, source


def load_into(module: nn.Module, ckpt: Checkpoint, prefix: str = "") -> nn.Module:
    """Copy the checkpoint's tensors under ``prefix`` into ``module``, strictly.

    Args:
        module: the target (DDP / torch.compile wrappers are looked through).
        ckpt: a loaded :class:`Checkpoint`.
        prefix: the module's name in a multi-module checkpoint (``"encoder"`` or ``"encoder."``);
            ``""`` uses every tensor.

    Raises:
        ValueError: listing missing keys, unexpected keys and shape mismatches (first few, with shapes).

    Returns:
        ``module`` (for chaining).
    """
    target = _unwrap(module)
    _, source = _mismatches(target, ckpt, prefix)
    target.load_state_dict(source, strict=True)
    return module


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def build_checked(ckpt: Checkpoint, prefix: str, build: Callable[[], ModuleT]) -> ModuleT:
    """Build the module whose tensors the checkpoint holds under ``prefix`` and load them, strictly.

    ``build`` (the model's constructor on the checkpoint's config) first runs on PyTorch's meta device,
    which records shapes without allocating memory, and that module is compared with the file's
    tensors. Only a config that matches them is then built for real: a config declaring a huge width
    (an 11 MB file saying ``hidden = 12000`` would otherwise allocate gigabytes before the strict check)
    costs nothing, and one its constructor cannot build at all (a negative size) is a ValueError too.

    Raises:
        ValueError: the config cannot be built, or the module does not match the tensors (as :func:`load_into`).
    """
    where = f"{ckpt.path or 'checkpoint'}"
    try:
        with torch.device("meta"):
            probe = build()
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    except (RuntimeError, TypeError, OverflowError, IndexError, KeyError, AssertionError) as exc:
        # Constructors check nothing themselves: torch's complaint about the sizes is the reason.
        raise ValueError(f"{where}: its config does not describe a model that can be built "
                         f"({type(exc).__name__}: {str(exc)[:200]})") from None  # fmt: skip
    _mismatches(_unwrap(probe), ckpt, prefix)
    return load_into(build(), ckpt, prefix)


__all__ = [
    "FORMAT_VERSION",
    "MAX_CHECKPOINT_BYTES",
    "Checkpoint",
    "build_checked",
    "load_checkpoint",
    "load_into",
    "read_metadata",
    "save_checkpoint",
    "sidecar_path",
]
