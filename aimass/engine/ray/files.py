"""Model files to a node without a shared disk: through Ray's object store, checked on arrival.

The server (the driver) reads the files a version is served from (``ModelSpec.artifact_files``)
and puts each in the object store once per version; a replica's actor fetches them on its node,
writes them under the node's temporary folder, points its copy of the spec there, and loads
only after ``ModelSpec.verify_files`` found every file equal to the registry's sha256. A spec
that has no recorded digests (not registered) gets them here, so every remote copy is checked.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import ray

from aimass.spec import ONNX_KEY, SOURCE_KEY, ModelSpec

Refs = dict[str, ray.ObjectRef]


def ship(spec: ModelSpec) -> tuple[ModelSpec, Refs]:
    """Verify the files here, put them in the object store; the spec carries their digests."""
    spec.verify_files()
    if not spec.sha256:
        spec = spec.model_copy(update={"sha256": spec.digests()})
    refs = {key: ray.put(path.read_bytes()) for key, path in spec.artifact_files().items()}
    return spec, refs


def materialize(spec: ModelSpec, refs: Refs) -> ModelSpec:
    """On the replica's node: write the shipped files and return the spec that points at them,
    refusing (Unavailable, from ``verify_files``) files that differ from the registry's."""
    blobs = dict(zip(refs, ray.get(list(refs.values())), strict=True))
    root = _folder(spec)
    source, onnx = Path(spec.source), spec.options.get("onnx")
    update: dict = {"source": str(root / "source" / source.name)}
    for key, data in blobs.items():
        if key == SOURCE_KEY:
            target = root / "source" / source.name
        elif key == ONNX_KEY:
            target = root / "options" / Path(onnx).name
            update["options"] = {**spec.options, "onnx": str(target)}
        else:
            target = root / "source" / key.removeprefix(f"{SOURCE_KEY}/")
            update["source"] = str(root / "source")
        _write(target, data)
    local = spec.model_copy(update=update)
    local.verify_files()
    return local


def _folder(spec: ModelSpec) -> Path:
    """One folder per version and file set, so replicas of other versions never collide."""
    digest = hashlib.sha256(repr(sorted(spec.sha256.items())).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "aimass-ray" / f"{spec.name}-{spec.version}-{digest}"


def _write(target: Path, data: bytes) -> None:
    """Whole or not at all: two replicas on one node may write the same file at once."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, target)
