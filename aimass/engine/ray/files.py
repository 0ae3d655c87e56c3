"""Model files to a node without a shared disk: through Ray's object store, checked on arrival.

The server (the driver) reads the files a version is served from (``ModelSpec.artifact_files``)
and puts each in the object store when it starts a replica; the replica's actor fetches them on
its node (unless a replica of the same version already wrote them there), writes them under the
node's temporary folder, points its copy of the spec there, and loads only after
``ModelSpec.verify_files`` found every file equal to the registry's sha256. A spec
that has no recorded digests (not registered) gets them here, so every remote copy is checked.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import ray

from aimass.errors import Unavailable
from aimass.spec import SOURCE_KEY, ModelSpec

Refs = dict[str, ray.ObjectRef]


def ship(spec: ModelSpec) -> tuple[ModelSpec, Refs]:
    """Verify the files here, put them in the object store; the spec carries their digests."""
    spec.verify_files()
    if not spec.sha256:
        spec = spec.model_copy(update={"sha256": spec.digests()})
    refs = {key: ray.put(path.read_bytes()) for key, path in spec.artifact_files().items()}
    return spec, refs


def materialize(spec: ModelSpec, refs: Refs) -> ModelSpec:
    """On the replica's node: the spec pointing at this node's copy of the files, fetched and
    written unless an earlier replica left them there; refused (Unavailable, from
    ``verify_files``) when a file differs from the registry's digest."""
    root = _folder(spec)
    targets = {key: _target(spec, root, key) for key in refs}
    local = _pointed_at(spec, root, targets)
    try:
        local.verify_files()
        return local  # another replica of this version wrote them on this node
    except Unavailable:
        pass
    for key, data in zip(refs, ray.get(list(refs.values())), strict=True):
        _write(targets[key], data)
    local.verify_files()
    return local


def _target(spec: ModelSpec, root: Path, key: str) -> Path:
    if key == SOURCE_KEY:
        return root / "source" / Path(spec.source).name
    if key.startswith("options."):
        return root / "options" / Path(spec.options[key.removeprefix("options.")]).name
    return root / "source" / key.removeprefix(f"{SOURCE_KEY}/")


def _pointed_at(spec: ModelSpec, root: Path, targets: dict[str, Path]) -> ModelSpec:
    """The spec with ``source`` (and ``FILE_OPTIONS`` files) on this node's copy."""
    single = SOURCE_KEY in targets
    update: dict = {"source": str(targets[SOURCE_KEY] if single else root / "source")}
    options = {
        key.removeprefix("options."): str(path)
        for key, path in targets.items()
        if key.startswith("options.")
    }
    if options:
        update["options"] = {**spec.options, **options}
    return spec.model_copy(update=update)


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
