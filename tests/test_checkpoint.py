"""Checkpoints: round trips, strict loading, and clear errors for every kind of bad file."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save
from torch import nn

from nlrd.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    load_checkpoint,
    load_into,
    read_metadata,
    save_checkpoint,
    sidecar_path,
)

SOURCES = [{"name": "CMU Graphics Lab Motion Capture Database", "licence": "free for research and commercial use"}]


@dataclass
class _Cfg:
    hidden: int = 8
    sizes: tuple[int, ...] = (1, 2)
    name: str = "tiny"
    extras: dict = field(default_factory=lambda: {"p": Path("a/b")})


class _Net(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.fc = nn.Linear(4, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.out = nn.Linear(hidden, 2)


def _net(seed: int = 0, hidden: int = 8) -> _Net:
    torch.manual_seed(seed)
    return _Net(hidden)


def _save(path: Path, tensors, **kw) -> Path:
    kw.setdefault("stage", "pose_aae")
    kw.setdefault("config", _Cfg())
    return save_checkpoint(path, tensors, **kw)


def _write_raw(path: Path, meta: dict | None) -> Path:
    """A safetensors file with arbitrary (possibly invalid) nlrd metadata."""
    metadata = None if meta is None else {"nlrd": json.dumps(meta)}
    path.write_bytes(st_save({"w": torch.zeros(3)}, metadata=metadata))
    return path


# --- round trips ------------------------------------------------------------------------------


def test_round_trip_tensors_and_metadata(tmp_path: Path) -> None:
    tensors = {
        "a": torch.randn(3, 4),
        "b.c": torch.arange(5, dtype=torch.int64),
        "h": torch.randn(2, dtype=torch.float16),
        "m": torch.tensor([True, False]),
    }
    path = _save(
        tmp_path / "sub" / "x.safetensors",
        tensors,
        data_sources=SOURCES,
        metrics={"mpjpe_mm": np.float32(41.5), "diverged": float("nan"), "per_joint": np.arange(3)},
        extra={"note": "hi"},
    )
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint) and ckpt.path == path
    assert set(ckpt.tensors) == set(tensors)
    for k, v in tensors.items():
        assert ckpt.tensors[k].dtype == v.dtype
        assert torch.equal(ckpt.tensors[k], v)
    meta = ckpt.meta
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["stage"] == ckpt.stage == "pose_aae"
    assert meta["config"] == {"hidden": 8, "sizes": [1, 2], "name": "tiny", "extras": {"p": "a/b"}}
    assert meta["skeleton"] == "h36m_17"
    assert meta["data_sources"] == SOURCES
    assert meta["metrics"] == {"mpjpe_mm": 41.5, "diverged": None, "per_joint": [0, 1, 2]}
    assert meta["extra"] == {"note": "hi"}
    assert meta["torch_version"] == torch.__version__
    assert meta["created"].endswith("Z")
    # The header is the source of truth; the sidecar is an identical, readable copy.
    assert read_metadata(path) == meta
    assert json.loads(sidecar_path(path).read_text()) == meta
    assert sidecar_path(path).name == "x.safetensors.json"
    sidecar_path(path).unlink()
    assert load_checkpoint(path).meta == meta
    # No temporary files left behind by the atomic write.
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.safetensors"]


def test_module_dict_prefixes_and_load_into(tmp_path: Path) -> None:
    enc, dec = _net(0), _net(1)
    enc.bn.running_mean.fill_(3.0)
    path = _save(tmp_path / "m.safetensors", {"encoder": enc, "decoder": dec})
    ckpt = load_checkpoint(path, expected_stage="pose_aae")
    assert ckpt.prefixes() == ["decoder", "encoder"]
    assert "encoder.fc.weight" in ckpt.tensors and "decoder.bn.num_batches_tracked" in ckpt.tensors
    fresh_enc, fresh_dec = _net(5), _net(6)
    load_into(fresh_enc, ckpt, prefix="encoder")
    load_into(fresh_dec, ckpt, prefix="decoder.")
    for a, b in ((enc, fresh_enc), (dec, fresh_dec)):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert ka == kb and torch.equal(va, vb)


def test_ddp_like_prefix_is_stripped(tmp_path: Path) -> None:
    net = _net()
    wrapped = nn.DataParallel(net)  # same "module." naming as DistributedDataParallel, no process group
    path = _save(tmp_path / "d.safetensors", wrapped)
    ckpt = load_checkpoint(path)
    assert all(not k.startswith("module.") for k in ckpt.tensors)
    # A plain state dict with DDP names is stripped too, and load_into looks through wrappers.
    path2 = _save(tmp_path / "d2.safetensors", {f"module.{k}": v for k, v in net.state_dict().items()})
    assert set(load_checkpoint(path2).tensors) == set(net.state_dict())
    load_into(nn.DataParallel(_net(3)), load_checkpoint(path2))


def test_tied_weights_save(tmp_path: Path) -> None:
    w = torch.randn(4, 4)
    path = _save(tmp_path / "t.safetensors", {"a": w, "b": w, "v": w[0]})
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt.tensors["a"], ckpt.tensors["b"]) and torch.equal(ckpt.tensors["v"], w[0])


def test_overwrite_is_atomic_replacement(tmp_path: Path) -> None:
    path = _save(tmp_path / "o.safetensors", {"x": torch.zeros(2)})
    _save(path, {"x": torch.ones(2)}, stage="source")
    ckpt = load_checkpoint(path)
    assert ckpt.stage == "source" and torch.equal(ckpt.tensors["x"], torch.ones(2))


# --- bad arguments on save --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stage": ""}, "stage"),
        ({"config": {"f": object()}}, "config.f"),
        ({"data_sources": [{"name": "x"}]}, "licence"),
        ({"metrics": {1: 2.0}}, "keys must be strings"),
    ],
)
def test_save_rejects_bad_metadata(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _save(tmp_path / "bad.safetensors", {"x": torch.zeros(1)}, **kwargs)
    assert not (tmp_path / "bad.safetensors").exists()


def test_save_accepts_license_spelling(tmp_path: Path) -> None:
    path = _save(tmp_path / "l.safetensors", {"x": torch.zeros(1)}, data_sources=[{"name": "n", "license": "MIT"}])
    assert read_metadata(path)["data_sources"] == [{"name": "n", "licence": "MIT"}]


def test_save_rejects_non_tensor(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'x' must be a torch.Tensor"):
        _save(tmp_path / "b.safetensors", {"x": [1, 2]})


# --- strict loading ---------------------------------------------------------------------------


def test_load_into_missing_key(tmp_path: Path) -> None:
    state = _net().state_dict()
    del state["out.bias"]
    ckpt = load_checkpoint(_save(tmp_path / "c.safetensors", state))
    with pytest.raises(ValueError, match=r"1 missing key\(s\): out\.bias \(2,\)") as err:
        load_into(_net(), ckpt)
    assert "c.safetensors" in str(err.value)


def test_load_into_unexpected_key(tmp_path: Path) -> None:
    state = dict(_net().state_dict(), extra_layer=torch.zeros(7, 2))
    ckpt = load_checkpoint(_save(tmp_path / "c.safetensors", state))
    with pytest.raises(ValueError, match=r"unexpected key\(s\): extra_layer \(7, 2\)"):
        load_into(_net(), ckpt)


def test_load_into_wrong_shape(tmp_path: Path) -> None:
    ckpt = load_checkpoint(_save(tmp_path / "c.safetensors", _net(hidden=16)))
    with pytest.raises(ValueError, match=r"shape mismatch.*fc\.weight checkpoint \(16, 4\) vs model \(8, 4\)"):
        load_into(_net(hidden=8), ckpt)


def test_load_into_unknown_prefix(tmp_path: Path) -> None:
    ckpt = load_checkpoint(_save(tmp_path / "c.safetensors", {"encoder": _net()}))
    with pytest.raises(ValueError, match=r"no tensors under this prefix.*\['encoder'\]"):
        load_into(_net(), ckpt, prefix="decoder")


def test_wrong_stage(tmp_path: Path) -> None:
    path = _save(tmp_path / "s.safetensors", {"x": torch.zeros(1)}, stage="motion_ae")
    with pytest.raises(ValueError, match="stage 'motion_ae', expected 'adapt'"):
        load_checkpoint(path, expected_stage="adapt")


# --- corrupt and foreign files ----------------------------------------------------------------


def _good_bytes(tmp_path: Path) -> bytes:
    return _save(tmp_path / "good.safetensors", {"w": torch.randn(64, 64)}).read_bytes()


def _corrupt_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = _good_bytes(tmp_path)
    files: dict[str, tuple[Path, str]] = {}

    def add(name: str, data: bytes, match: str) -> None:
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(data)
        files[name] = (p, match)

    add("empty", b"", "too short")
    add("truncated_data", good[: len(good) - 100], "truncated checkpoint")
    add("truncated_header", good[:40], "not a safetensors file")
    add("random", np.random.default_rng(0).bytes(4096), "not a safetensors file")
    add("text", b'{"format_version": 1}', "not a safetensors file")
    zip_path = tmp_path / "zip.safetensors"
    torch.save({"w": torch.zeros(3)}, zip_path)
    files["torch_zip"] = (zip_path, "zip archive.*never loads")
    pkl_path = tmp_path / "pickle.safetensors"
    torch.save({"w": torch.zeros(3)}, pkl_path, _use_new_zipfile_serialization=False)
    files["torch_legacy_pickle"] = (pkl_path, "pickle.*never loads")
    add("plain_pickle", pickle.dumps({"w": [1, 2, 3]}), "pickle.*never loads")
    files["no_metadata"] = (_write_raw(tmp_path / "nometa.safetensors", None), "no 'nlrd' metadata")
    meta = json.loads(json.dumps(read_metadata(tmp_path / "good.safetensors")))
    files["newer_version"] = (
        _write_raw(tmp_path / "v2.safetensors", dict(meta, format_version=FORMAT_VERSION + 1)),
        "newer than this nlrd supports",
    )
    files["bad_version"] = (_write_raw(tmp_path / "v0.safetensors", dict(meta, format_version="1")), "unknown")
    no_stage = {k: v for k, v in meta.items() if k != "stage"}
    files["missing_stage"] = (_write_raw(tmp_path / "ns.safetensors", no_stage), r"lacks \['stage'\]")
    return files


def test_corrupt_files_raise_clear_errors(tmp_path: Path) -> None:
    for name, (path, match) in _corrupt_files(tmp_path).items():
        for loader in (load_checkpoint, read_metadata):
            if name == "truncated_data" and loader is read_metadata:
                # The header is intact, so the cheap metadata read still works (and says so).
                with pytest.raises(ValueError, match=match):
                    load_checkpoint(path)
                continue
            with pytest.raises(ValueError, match=match) as err:
                loader(path)
            assert path.name in str(err.value), (name, str(err.value))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found.*nope.safetensors"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="not a file"):
        read_metadata(tmp_path)


# --- configs and headers outside the contract: every one a ValueError, nothing built or read first ------------
def _relation_file(folder: Path, name: str = "pose-flip", *, file_name: str | None = None,
                   config: dict | None = None, model: dict | None = None, stage: str | None = None) -> Path:  # fmt: skip
    """A relation network checkpoint as training.train_relations writes it (tiny, random weights), with
    ``config`` / ``model`` entries replaced (None values removed) to make it bad."""
    from nlrd.models.relation_net import RelationNet, RelationNetConfig

    torch.manual_seed(0)
    net = RelationNet(RelationNetConfig(latent_dim=32, hidden=16, layers=4))
    cfg: dict = {"model": {"latent_dim": 32, "hidden": 16, "layers": 4, **(model or {})}, "relation": name,
                 "order": "pose", **(config or {})}  # fmt: skip
    cfg = {k: v for k, v in cfg.items() if v is not None}
    return save_checkpoint(folder / (file_name or f"{name}.safetensors"), {"net": net},
                           stage=stage or f"relation:{name}", config=cfg)  # fmt: skip


def test_a_good_relation_file_loads(tmp_path: Path) -> None:
    from nlrd.inference import load_relation_net, load_relation_nets

    name, net = load_relation_net(_relation_file(tmp_path))
    assert name == "pose-flip" and net.cfg.hidden == 16
    assert list(load_relation_nets(tmp_path)) == ["pose-flip"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"config": {"relation": None}}, "names no relation", id="no-relation"),
        pytest.param({"config": {"relation": 7}}, "names no relation", id="relation-not-a-string"),
        pytest.param({"name": "teleport"}, "'teleport', which is not a known relation", id="unknown-relation"),
        pytest.param({"name": "x" * 100_000, "file_name": "x.safetensors"}, r"'x{57}\.\.\.', which is not a known",
                     id="huge-relation-name"),
        pytest.param({"file_name": "inplane-10.safetensors"},
                     "relation 'pose-flip'; it must be named 'pose-flip.safetensors'", id="file-named-after-another-relation"),
        pytest.param({"stage": "relation:inplane-10"}, "says relation 'pose-flip' but stage 'relation:inplane-10'",
                     id="stage-names-another-relation"),
        pytest.param({"model": {"hidden": -5}}, r"RelationNetConfig\.hidden = -5 is out of range", id="hidden-negative"),
        pytest.param({"model": {"hidden": "abc"}}, r"RelationNetConfig\.hidden = 'abc' must be a whole number", id="hidden-text"),
        pytest.param({"model": {"hidden": 10**7}}, r"RelationNetConfig\.hidden = 10000000 is out of range", id="hidden-10-7"),
        pytest.param({"model": {"hidden": 16.0}}, "must be a whole number", id="hidden-float"),
        pytest.param({"model": {"hidden": True}}, "must be a whole number", id="hidden-bool"),
        pytest.param({"model": {"hidden": None}}, "must be a whole number", id="hidden-null"),
        pytest.param({"model": {"layers": [4]}}, "must be a whole number", id="layers-list"),
        pytest.param({"model": {"hidden": 0}}, r"shape mismatch", id="hidden-0",
                     marks=pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")),
        pytest.param({"model": {"hidden": 12}}, r"shape mismatch.*\(16, 32\) vs model \(12, 32\)", id="hidden-disagrees"),
        pytest.param({"config": {"model": "big"}}, "no config.model", id="model-not-an-object"),
    ],
)
def test_bad_relation_file_is_a_value_error(tmp_path: Path, kwargs: dict, match: str) -> None:
    from nlrd.inference import load_relation_net, load_relation_nets

    path = _relation_file(tmp_path, **kwargs)
    with pytest.raises(ValueError, match=match):
        load_relation_net(path)
    with pytest.raises(ValueError, match=match):  # the predictor's folder loader says the same
        load_relation_nets(tmp_path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        pytest.param({"hidden": "abc"}, r"PoseAAEConfig\.hidden = 'abc' must be a whole number", id="text-size"),
        pytest.param({"latent_dim": -5}, r"PoseAAEConfig\.latent_dim = -5 is out of range", id="negative-size"),
        pytest.param({"hidden": 10**7}, r"PoseAAEConfig\.hidden = 10000000 is out of range", id="huge-size"),
        pytest.param({"depth": 5000}, r"PoseAAEConfig\.depth = 5000 is out of range", id="huge-count"),
        pytest.param({"skeleton": ["h36m_17"]}, r"PoseAAEConfig\.skeleton = \['h36m_17'\] must be a string", id="list-name"),
    ],
)
def test_bad_prior_config_is_a_value_error(tmp_path: Path, edit: dict, match: str) -> None:
    from nlrd.models.pose_aae import PoseAAEConfig, PoseDecoder, PoseEncoder
    from nlrd.priors import PosePrior
    from nlrd.skeleton import get_skeleton

    cfg = PoseAAEConfig(group_width=8, part_width=8, hidden=16, depth=1, disc_hidden=8)
    sk = get_skeleton(cfg.skeleton)
    model = dataclasses.asdict(cfg) | edit
    path = save_checkpoint(tmp_path / "pose_aae.safetensors", {"encoder": PoseEncoder(cfg, sk), "decoder": PoseDecoder(cfg, sk)},
                           stage="pose_aae", config={"model": model})  # fmt: skip
    with pytest.raises(ValueError, match=match):
        PosePrior.from_pretrained(path)


@pytest.mark.parametrize(
    ("meta_edit", "match"),
    [
        pytest.param({"config": ["model"]}, r"wrong type: config \(list, expected dict\)", id="config-list"),
        pytest.param({"stage": 3}, r"wrong type: stage \(int, expected str\)", id="stage-number"),
        pytest.param({"extra": "x"}, r"wrong type: extra \(str, expected dict\)", id="extra-text"),
    ],
)
def test_metadata_fields_of_the_wrong_type(tmp_path: Path, meta_edit: dict, match: str) -> None:
    meta = {"format_version": FORMAT_VERSION, "stage": "pose_aae", "config": {"model": {}}, "skeleton": "h36m_17"}
    path = _write_raw(tmp_path / "x.safetensors", meta | meta_edit)
    for loader in (load_checkpoint, read_metadata):
        with pytest.raises(ValueError, match=match):
            loader(path)


def _peak_growth_mb(call: str) -> tuple[str, float]:
    """Run ``call`` in a fresh Python; returns the ValueError it raised (or "no error") and how far its peak
    memory (maximum RSS) grew during the call, MB. Any other exception fails the run."""
    code = "\n".join([
        "import resource", "import torch", "from nlrd.checkpoint import load_checkpoint",
        "from nlrd.inference import load_relation_net", "from nlrd.models.relation_net import RelationNet",
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss",
        "try:", f"    {call}", "    msg = 'no error'", "except ValueError as exc:", "    msg = str(exc)",
        "print(msg)", "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)",
    ])  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    msg, growth = proc.stdout.strip().rsplit("\n", 1)
    return msg, float(growth)


def test_huge_declared_width_is_refused_before_allocating(tmp_path: Path) -> None:
    """A relation file of a few kB whose config says hidden = 4096 and 16 layers: the model it describes takes
    about 1 GB (the issue's hidden = 12000 is refused by the range check alone). It is refused from the
    tensors' shapes before anything is allocated."""
    path = _relation_file(tmp_path, model={"hidden": 4096, "layers": 16})
    msg, growth = _peak_growth_mb(f"load_relation_net({str(path)!r})")
    assert "does not match RelationNet" in msg and "(4096, 32)" in msg, msg
    assert growth < 50, f"peak memory grew {growth:.0f} MB before the refusal"


def _sparse_file(path: Path, size: int, head: bytes) -> Path:
    """``size`` bytes that start with ``head`` and take no disk space (a hole after it)."""
    with path.open("wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return path


def test_header_is_read_before_the_data(tmp_path: Path) -> None:
    """Files that are not the expected checkpoint are refused from their first bytes, whatever their size:
    a 900 MB file of another stage, a 900 MB pickle, a 3 GB file (over the size limit)."""
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [200_000_000], "data_offsets": [0, 800_000_000]},
                         "__metadata__": {"nlrd": json.dumps({"format_version": 1, "stage": "motion_ae", "config": {},
                                                              "skeleton": "h36m_17"})}}).encode()  # fmt: skip
    head = struct.pack("<Q", len(header)) + header
    other_stage = _sparse_file(tmp_path / "other.safetensors", len(head) + 800_000_000, head)
    pickle_like = _sparse_file(tmp_path / "pickle.safetensors", 900_000_000, pickle.dumps({"w": 1}))
    huge = _sparse_file(tmp_path / "huge.safetensors", 3 * 2**30, head)
    for path, match in ((other_stage, "stage 'motion_ae', expected 'pose_aae'"), (pickle_like, "pickle"),
                        (huge, "3072 MB; a checkpoint of this project is at most 1024 MB")):  # fmt: skip
        msg, growth = _peak_growth_mb(f"load_checkpoint({str(path)!r}, expected_stage='pose_aae')")
        assert match in msg and path.name in msg, msg
        assert growth < 50, f"{path.name}: peak memory grew {growth:.0f} MB before the refusal"
