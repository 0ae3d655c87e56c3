"""Classic ML scorers: LightGBM model files, scikit-learn via ONNX, and (opt-in) pickles.

One runtime, three file formats, one tensor interface for the v2 protocol:

* inputs: ``features`` (FP32, ``[-1, n_features]``) for LightGBM and pickled models; an ONNX
  model keeps its own input names, dtypes and shapes, read from the onnxruntime session.
* outputs: ``label`` and ``probabilities`` for task ``classification``, ``prediction`` for
  ``regression``. Task ``tensor`` (the spec default) means "whatever the model is".

Pickles (``.joblib``/``.pkl``) run code when loaded, so they are refused unless the spec says
``trust_pickle: true``; a scikit-learn model is better served as ONNX (skl2onnx).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from aimass.dtypes import ORT_TO_V2, V2_TO_NUMPY, v2_datatype
from aimass.errors import InvalidInput
from aimass.runtimes.base import Payload, Runtime, TensorInfo
from aimass.runtimes.onnx_session import make_session, tensor_info
from aimass.spec import ModelSpec

FEATURES = "features"
LABEL, PROBABILITIES, PREDICTION = "label", "probabilities", "prediction"
TASKS = ("classification", "regression")

_FORMAT_BY_SUFFIX = {
    ".txt": "lightgbm",
    ".lgb": "lightgbm",
    ".model": "lightgbm",
    ".onnx": "onnx",
    ".joblib": "pickle",
    ".pkl": "pickle",
    ".pickle": "pickle",
}
_FORMAT_ALIASES = {"lightgbm": "lightgbm", "onnx": "onnx", "pickle": "pickle", "joblib": "pickle"}
_LIGHTGBM_CLASSIFIERS = ("binary", "multiclass", "multiclassova")


def resolve_format(spec: ModelSpec) -> str:
    """The file format, from ``options.format`` or else the source's suffix.

    Decided without touching the file, so a pickle is refused before anything is read.
    """
    wanted = spec.options.get("format")
    if wanted is not None:
        fmt = _FORMAT_ALIASES.get(str(wanted).lower())
        if fmt is None:
            choices = ", ".join(sorted(_FORMAT_ALIASES))
            raise InvalidInput(
                f"options.format {wanted!r} is not one of: {choices}", param="options.format"
            )
    else:
        fmt = _FORMAT_BY_SUFFIX.get(Path(spec.source).suffix.lower())
        if fmt is None:
            suffixes = ", ".join(sorted(_FORMAT_BY_SUFFIX))
            raise InvalidInput(
                f"cannot tell the tabular format of {spec.source!r} from its suffix "
                f"(known: {suffixes}); set options.format",
                param="options.format",
            )
    if fmt == "pickle" and not spec.trust_pickle:
        raise InvalidInput(
            f"{spec.source!r} is a pickle, which runs code when loaded; set trust_pickle: true "
            "only for files you trust, or convert the model to ONNX with skl2onnx",
            param="trust_pickle",
        )
    return fmt


class TabularRuntime(Runtime):
    """Serves one tabular model; the work is done by a format-specific backend."""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        if spec.task not in (*TASKS, "tensor"):
            raise InvalidInput(
                f"runtime 'tabular' serves tasks classification and regression, not {spec.task!r}",
                param="task",
            )
        self.format = resolve_format(spec)
        self._backend: _Backend | None = None

    def load(self) -> None:
        path = Path(self.spec.source)
        if not path.is_file():
            raise InvalidInput(f"model source {str(path)!r} is not a file", param="source")
        backend_cls = {"lightgbm": _LightGBM, "onnx": _Onnx, "pickle": _Pickle}[self.format]
        self._backend = backend_cls(self.spec, path)

    def inputs(self) -> list[TensorInfo]:
        return self._loaded().inputs

    def outputs(self) -> list[TensorInfo]:
        return self._loaded().outputs

    def infer(self, batch: Payload) -> Payload:
        backend = self._loaded()
        return backend.predict(_check_inputs(batch, backend.inputs, backend.exact_dtypes))

    def unload(self) -> None:
        self._backend = None

    def describe(self) -> dict[str, Any]:
        return self._loaded().describe()

    def _loaded(self) -> _Backend:
        if self._backend is None:
            raise RuntimeError(f"tabular model {self.spec.name!r} is not loaded")
        return self._backend


class _Backend(ABC):
    """What every format provides once loaded: tensor infos, ``predict`` and metadata."""

    fmt: str
    exact_dtypes = False
    """True: cast inputs to the declared dtype; False: float64 also goes through as it is."""
    task: str
    n_features: int | None
    classes: list[Any] | None = None
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    @abstractmethod
    def predict(self, batch: Payload) -> Payload:
        """Outputs for a batch of rows (each format's own model call)."""

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "format": self.fmt,
            "task": self.task,
            "n_features": self.n_features,
        }
        if self.classes is not None:
            info["classes"] = list(self.classes)
        return info


class _LightGBM(_Backend):
    """A Booster read from a ``save_model`` text file; LightGBM itself knows no class names."""

    fmt = "lightgbm"

    def __init__(self, spec: ModelSpec, path: Path):
        import lightgbm

        try:
            self.booster = lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as exc:
            raise InvalidInput(f"cannot read LightGBM model {str(path)!r}: {exc}") from exc
        self.threads = spec.threads
        self.objective = _lightgbm_objective(path)
        self.n_features = self.booster.num_feature()
        is_classifier = self.objective in _LIGHTGBM_CLASSIFIERS
        self.task = _pick_task(spec, is_classifier, f"LightGBM objective {self.objective!r}")
        n_classes = max(2, self.booster.num_model_per_iteration())
        if self.task == "classification":
            self.classes = _lightgbm_classes(spec, n_classes)
        self.inputs = [TensorInfo(FEATURES, "FP32", [-1, self.n_features])]
        self.outputs = _standard_outputs(self.task, self.classes)

    def predict(self, batch: Payload) -> Payload:
        raw = self.booster.predict(batch[FEATURES], num_threads=self.threads)
        if self.task == "regression":
            return {PREDICTION: np.asarray(raw, dtype=np.float32)}
        proba = np.asarray(raw, dtype=np.float32)
        if proba.ndim == 1:
            proba = np.column_stack([1.0 - proba, proba])
        return _classification_result(proba, self.classes)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "objective": self.objective}


class _Onnx(_Backend):
    """A scikit-learn model converted by skl2onnx, served by onnxruntime."""

    fmt = "onnx"
    exact_dtypes = True

    def __init__(self, spec: ModelSpec, path: Path):
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        self.invalid_argument = InvalidArgument
        self.session = make_session(path, spec.threads)
        self.inputs = [_input_info(arg) for arg in self.session.get_inputs()]
        shape = self.inputs[0].shape if len(self.inputs) == 1 else []
        self.n_features = shape[1] if len(shape) == 2 and shape[1] != -1 else None
        self._pick_outputs(spec)
        self.classes = _onnx_classes(path) if self.task == "classification" else None
        self.outputs = self._output_infos()

    def _pick_outputs(self, spec: ModelSpec) -> None:
        """skl2onnx names a classifier's outputs ``label``/``probabilities`` when ZipMap is off
        (recent versions) and ``output_label``/``output_probability`` otherwise."""
        outputs = {out.name: out for out in self.session.get_outputs()}
        pairs = [("output_label", "output_probability"), (LABEL, PROBABILITIES)]
        pair = next((p for p in pairs if p[0] in outputs and p[1] in outputs), None)
        self.task = _pick_task(spec, pair is not None, f"ONNX outputs {list(outputs)}")
        if pair is not None and self.task == "classification":
            self.label_name, self.proba_name = pair
            self.zipmap = outputs[self.proba_name].type.startswith("seq(")
            self.fetch = list(pair)
        else:
            self.fetch = [next(iter(outputs))]

    def _output_infos(self) -> list[TensorInfo]:
        by_name = {out.name: out for out in self.session.get_outputs()}
        if self.task == "regression":
            shape = tensor_info(by_name[self.fetch[0]]).shape
            width = shape[1] if len(shape) == 2 and shape[1] != 1 else None
            return [TensorInfo(PREDICTION, "FP32", [-1] if width is None else [-1, width])]
        label = ORT_TO_V2.get(by_name[self.label_name].type, "BYTES")
        n_classes = len(self.classes) if self.classes else -1
        return [
            TensorInfo(LABEL, label, [-1]),
            TensorInfo(PROBABILITIES, "FP32", [-1, n_classes]),
        ]

    def predict(self, batch: Payload) -> Payload:
        feeds = {info.name: batch[info.name] for info in self.inputs}
        try:
            results = self.session.run(self.fetch, feeds)
        except self.invalid_argument as exc:  # a value the graph refuses is the caller's input
            raise InvalidInput(f"the ONNX model refused the input: {exc}") from exc
        if self.task == "regression":
            out = np.asarray(results[0], dtype=np.float32)
            return {PREDICTION: out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out}
        label, proba = results
        if self.zipmap:
            keys = self.classes if self.classes else list(proba[0])
            proba = [[row[key] for key in keys] for row in proba]
        label = np.asarray(label)
        label = label.astype(object) if label.dtype.kind in "USO" else label
        return {LABEL: label, PROBABILITIES: np.asarray(proba, dtype=np.float32)}


class _Pickle(_Backend):
    """A joblib/pickle estimator with the scikit-learn API (``predict``, ``predict_proba``)."""

    fmt = "pickle"

    def __init__(self, spec: ModelSpec, path: Path):
        import joblib

        try:
            self.model = joblib.load(path)
        except Exception as exc:  # unpickling can raise anything the file's code raises
            raise InvalidInput(f"cannot load pickle {str(path)!r}: {exc}") from exc
        if not hasattr(self.model, "predict"):
            kind = type(self.model).__name__
            raise InvalidInput(f"pickle {str(path)!r} holds a {kind}, not a model with predict()")
        _set_threads(self.model, spec.threads)
        classes = getattr(self.model, "classes_", None)
        self.task = _pick_task(spec, classes is not None, type(self.model).__name__)
        if self.task == "classification":
            self.classes = [_plain(c) for c in np.asarray(classes)]
        self.has_proba = hasattr(self.model, "predict_proba")
        self.n_features = getattr(self.model, "n_features_in_", None)
        self.inputs = [TensorInfo(FEATURES, "FP32", [-1, self.n_features or -1])]
        self.outputs = _standard_outputs(self.task, self.classes)
        if self.task == "classification" and not self.has_proba:
            self.outputs = self.outputs[:1]

    def predict(self, batch: Payload) -> Payload:
        features = batch[FEATURES]
        try:
            if self.task == "regression":
                return {PREDICTION: np.asarray(self.model.predict(features), dtype=np.float32)}
            if not self.has_proba:
                return {LABEL: _label_array(self.model.predict(features))}
            proba = np.asarray(self.model.predict_proba(features), dtype=np.float32)
        except ValueError as exc:  # scikit-learn's answer to input it cannot take
            raise InvalidInput(f"the model refused the input: {exc}") from exc
        return _classification_result(proba, self.classes)


def _check_inputs(batch: Payload, infos: list[TensorInfo], exact: bool) -> Payload:
    """Names, rank, width and dtype, checked before the library sees the arrays."""
    expected = {info.name for info in infos}
    unknown = sorted(k for k in batch if k not in expected and not k.startswith("__"))
    if unknown:
        raise InvalidInput(f"unknown input(s) {unknown}; this model takes {sorted(expected)}")
    checked = {}
    for info in infos:
        if info.name not in batch:
            raise InvalidInput(f"missing input {info.name!r}", param=info.name)
        checked[info.name] = _check_array(info, batch[info.name], exact)
    rows = {len(arr) for arr in checked.values()}
    if len(rows) > 1:
        raise InvalidInput(f"inputs have different row counts: {sorted(rows)}")
    return checked


def _check_array(info: TensorInfo, value: np.ndarray, exact: bool) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != len(info.shape):
        raise InvalidInput(
            f"input {info.name!r} must have shape {info.shape}, got {list(arr.shape)}",
            param=info.name,
        )
    for axis, (want, got) in enumerate(zip(info.shape, arr.shape, strict=True)):
        if want not in (-1, got):
            message = f"must have shape {info.shape}, got {list(arr.shape)}"
            if axis == 1:
                message = f"expects {want} features per row, got {got}"
            raise InvalidInput(f"input {info.name!r} {message}", param=info.name)
    return _cast(info, arr, exact)


def _cast(info: TensorInfo, arr: np.ndarray, exact: bool) -> np.ndarray:
    """Numbers convert to the declared dtype; LightGBM and scikit-learn take float64 as is."""
    target = V2_TO_NUMPY[info.datatype]
    if target.kind == "O":
        return arr.astype(object)
    if not exact and arr.dtype == np.float64:
        return arr
    if target.kind in "biu" and arr.dtype.kind == "f":
        raise InvalidInput(
            f"input {info.name!r} must be {info.datatype}, got {arr.dtype}", param=info.name
        )
    try:
        return arr.astype(target, copy=False)
    except (TypeError, ValueError) as exc:  # e.g. text where numbers belong
        raise InvalidInput(
            f"input {info.name!r} must be {info.datatype}: {exc}", param=info.name
        ) from exc


def _pick_task(spec: ModelSpec, is_classifier: bool, what: str) -> str:
    """The spec's task, checked against the model; ``tensor`` takes the model's own."""
    found = "classification" if is_classifier else "regression"
    if spec.task == "tensor" or spec.task == found:
        return found
    if spec.task == "regression":  # a classifier's probabilities are a fine score
        raise InvalidInput(
            f"task 'regression' does not fit a classifier ({what}); use task classification",
            param="task",
        )
    raise InvalidInput(
        f"task 'classification' needs a classifier, but this model is a regressor ({what})",
        param="task",
    )


def _standard_outputs(task: str, classes: list[Any] | None) -> list[TensorInfo]:
    if task == "regression":
        return [TensorInfo(PREDICTION, "FP32", [-1])]
    classes = classes or []
    return [
        TensorInfo(LABEL, _label_datatype(np.asarray(classes)), [-1]),
        TensorInfo(PROBABILITIES, "FP32", [-1, len(classes)]),
    ]


def _classification_result(proba: np.ndarray, classes: list[Any] | None) -> Payload:
    index = np.argmax(proba, axis=1)
    labels = np.asarray(classes)[index] if classes else index
    return {LABEL: _label_array(labels), PROBABILITIES: proba}


def _label_array(labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype.kind in "USO":
        return arr.astype(str).astype(object)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    return arr


def _label_datatype(classes: np.ndarray) -> str:
    """The datatype of the labels ``_label_array`` makes of these classes."""
    return v2_datatype(_label_array(classes).dtype) or "BYTES"


def _plain(value: Any) -> Any:
    """numpy scalars → Python values, so ``describe()`` pickles and serialises as JSON."""
    return value.item() if isinstance(value, np.generic) else value


def _lightgbm_objective(path: Path) -> str:
    """The ``objective=`` line of the model header (before the first tree)."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("objective="):
                return line.split("=", 1)[1].split()[0]
            if line.startswith("Tree="):
                break
    return "unknown"


def _lightgbm_classes(spec: ModelSpec, n_classes: int) -> list[Any]:
    """Class ``i`` is ``options.classes[i]`` when given, else the integer ``i``."""
    names = spec.options.get("classes")
    if names is None:
        return list(range(n_classes))
    if not isinstance(names, list) or len(names) != n_classes:
        raise InvalidInput(
            f"options.classes must list {n_classes} class names, got {names!r}",
            param="options.classes",
        )
    return names


def _onnx_classes(path: Path) -> list[Any] | None:
    """skl2onnx stores class labels as a ``classlabels_*`` attribute on the classifier node."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name in ("classlabels_ints", "classlabels_int64s", "classlabels_strings"):
                values = helper.get_attribute_value(attr)
                return [v.decode() if isinstance(v, bytes) else int(v) for v in values]
    return None


def _input_info(arg: Any) -> TensorInfo:
    info = tensor_info(arg)
    if info.datatype not in V2_TO_NUMPY:
        raise InvalidInput(f"ONNX input {arg.name!r} has unsupported type {arg.type}")
    return info


def _set_threads(model: Any, threads: int) -> None:
    """Estimators with ``n_jobs`` (forests, k-NN) use the spec's thread count."""
    get_params = getattr(model, "get_params", None)
    if get_params is not None and "n_jobs" in get_params(deep=False):
        model.set_params(n_jobs=threads)
