"""The registry's own copy of a version's files: ``AIMASS_HOME/models/<name>/<version>/``.

A version is registered with the files it will be served from and their sha256
(``ModelSpec.sha256``, checked at every load), so a file moved, edited or swapped behind the
registry's back is refused instead of silently served. Files are copied, or hard-linked when
at least ``artifact_link_min_bytes`` and on the same filesystem (no second copy of a large
model; an edit made in place through the other name is still caught by the digest), or, with
``copy=False`` (``--no-copy``), referenced where they are.

Files are staged in a hidden folder beside the version's folder, digested there (so the
digests are those of the bytes the registry keeps, even if the original changes meanwhile)
and moved into place just before the version is recorded; ``rollback`` undoes the move, so a
refused registration leaves nothing behind and a refused replace restores the old files.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aimass.errors import InvalidInput
from aimass.spec import FILE_OPTIONS, ModelSpec


def version_dir(home: Path, name: str, version: int) -> Path:
    """Where the registry keeps the files of ``name`` version ``version``."""
    return home / "models" / name / str(version)


@dataclass
class Staged:
    """A version's files on their way into the registry.

    ``spec`` names the files where they will live, with their digests.
    """

    spec: ModelSpec
    how: str
    """``copied``, ``hard-linked``, ``copied and hard-linked`` or ``referenced``."""
    staging: Path | None = None
    final: Path | None = None
    _aside: Path | None = field(default=None, repr=False)
    _committed: bool = field(default=False, repr=False)

    def commit(self) -> None:
        """Move the staged files into the version's folder, setting an older one aside."""
        if self.staging is None or self.final is None:
            return
        if self.final.exists():
            self._aside = self.final.with_name(f".replaced-{self.final.name}-{uuid.uuid4().hex}")
            self.final.rename(self._aside)
        self.staging.rename(self.final)
        self._committed = True

    def finish(self) -> None:
        """The version is recorded: drop the files it replaced."""
        if self._aside is not None:
            shutil.rmtree(self._aside, ignore_errors=True)

    def rollback(self) -> None:
        """The version was not recorded: remove its files and put back those set aside."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        if self._committed and self.final is not None:
            shutil.rmtree(self.final, ignore_errors=True)
        if self._aside is not None and self.final is not None:
            self._aside.rename(self.final)
        if self.final is not None and not any(self.final.parent.iterdir()):
            self.final.parent.rmdir()  # the model's folder, made for this version alone


def stage(spec: ModelSpec, home: Path, *, copy: bool, link_min_bytes: int) -> Staged:
    """Take ``spec``'s files into the registry (or reference them) and record their digests.

    A digest given in the spec (``sha256``) pins the file: a different one is refused.
    """
    final = version_dir(home, spec.name, spec.version)
    if not copy or _inside(Path(spec.source), final):
        recorded = pin(spec, spec.digests())
        return Staged(spec=recorded, how="referenced")
    staging = final.with_name(f".staging-{final.name}-{uuid.uuid4().hex}")
    staging.mkdir(parents=True)
    try:
        placed, how = _place_all(spec, staging, link_min_bytes)
        recorded = pin(placed, placed.digests())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Staged(_moved(recorded, staging, final), how, staging=staging, final=final)


def _place_all(spec: ModelSpec, staging: Path, link_min_bytes: int) -> tuple[ModelSpec, str]:
    """Copy or link the source (and ``FILE_OPTIONS`` files outside it) into ``staging``."""
    source = Path(spec.source)
    target = staging / source.name
    ways = _place(source, target, link_min_bytes)
    options = dict(spec.options)
    for option in FILE_OPTIONS:
        value = options.get(option)
        if not (isinstance(value, str) and Path(value).is_absolute()):
            continue
        if Path(value).is_relative_to(source):
            options[option] = str(target / Path(value).relative_to(source))
        else:
            option_target = staging / f"{option}-{Path(value).name}"
            ways |= _place(Path(value), option_target, link_min_bytes)
            options[option] = str(option_target)
    how = " and ".join(sorted(ways))
    return spec.model_copy(update={"source": str(target), "options": options}), how


def _place(source: Path, target: Path, link_min_bytes: int) -> set[str]:
    """Copy a file or a folder's files; large files are hard-linked where possible."""
    if source.is_file():
        return {_place_file(source, target, link_min_bytes)}
    ways = set()
    for path in sorted(source.rglob("*")):
        if path.is_file():
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            ways.add(_place_file(path, dest, link_min_bytes))
    if not ways:
        raise InvalidInput(f"model folder {source} holds no files", param="source")
    return ways


def _place_file(source: Path, target: Path, link_min_bytes: int) -> str:
    real = source.resolve()
    if real.stat().st_size >= link_min_bytes:
        try:
            os.link(real, target)
            return "hard-linked"
        except OSError:  # another filesystem, or links not allowed: copy instead
            pass
    shutil.copy2(real, target)
    return "copied"


def pin(spec: ModelSpec, digests: dict[str, str]) -> ModelSpec:
    """``spec`` with ``digests`` recorded; digests the spec already names must match."""
    for key, wanted in spec.sha256.items():
        if digests.get(key) != wanted:
            found = digests.get(key, "no such file")
            raise InvalidInput(
                f"model {spec.name!r}: {key} does not have the sha256 the spec names "
                f"(spec {wanted}, file {found})",
                param="sha256",
            )
    if spec.sha256 and spec.sha256.keys() != digests.keys():
        extra = sorted(digests.keys() - spec.sha256.keys())
        raise InvalidInput(
            f"model {spec.name!r}: files {extra} are not named in the spec's sha256",
            param="sha256",
        )
    return spec.model_copy(update={"sha256": digests})


def _moved(spec: ModelSpec, old: Path, new: Path) -> ModelSpec:
    """The same spec with paths under ``old`` moved under ``new``."""

    def move(value: str) -> str:
        path = Path(value)
        return str(new / path.relative_to(old)) if _inside(path, old) else value

    options = dict(spec.options)
    for option in FILE_OPTIONS:
        if isinstance(options.get(option), str):
            options[option] = move(options[option])
    return spec.model_copy(update={"source": move(spec.source), "options": options})


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())
