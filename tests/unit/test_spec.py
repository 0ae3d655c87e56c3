from __future__ import annotations

import pytest

from aimass.errors import InvalidInput
from aimass.refs import MAX_VERSION, parse_version
from aimass.spec import ModelSpec


def test_yaml_forms_and_relative_sources(tmp_path):
    (tmp_path / "one.yaml").write_text("name: a\nruntime: onnx\nsource: a.onnx\n")
    (tmp_path / "many.yaml").write_text(
        "models:\n  - {name: a, runtime: onnx, source: /abs/a.onnx, version: 2}\n"
        "  - {name: b, runtime: tabular, source: b.txt, task: classification,"
        " batching: {max_batch_size: 64, max_delay_ms: 3}}\n"
    )
    (one,) = ModelSpec.from_yaml(tmp_path / "one.yaml")
    assert one.source == str(tmp_path / "a.onnx") and one.version == 1
    a, b = ModelSpec.from_yaml(tmp_path / "many.yaml")
    assert a.source == "/abs/a.onnx" and a.version == 2
    assert b.batching.max_batch_size == 64 and b.batching.max_delay_ms == 3


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {"name": "a", "runtime": "onnx", "source": "x", "batching": {"max_batch_size": 0}},
            "batching.max_batch_size",
        ),
        (
            {"name": "a", "runtime": "onnx", "source": "x", "limits": {"max_queue": -1}},
            "limits.max_queue",
        ),
        ({"name": "a b", "runtime": "onnx", "source": "x"}, "name"),
        ({"name": "a", "runtime": "tf", "source": "x"}, "runtime"),
        ({"name": "a", "runtime": "onnx", "source": "x", "replica": 2}, "replica"),
        ({"name": "a", "runtime": "llamacpp", "source": "x", "task": "embedding"}, "llamacpp"),
    ],
)
def test_invalid_specs_name_the_field(data, field):
    with pytest.raises(InvalidInput) as err:
        ModelSpec.parse(data)
    assert field in err.value.message


def test_a_version_fits_the_registry_and_every_api_reads_it_alike():
    """Versions are 32-bit integers in the registry: the largest one is accepted by the spec and
    by every API's parser, one more is a 400 naming the field, not an overflow."""
    assert ModelSpec.parse({"name": "a", "runtime": "onnx", "source": "a", "version": MAX_VERSION})
    with pytest.raises(InvalidInput, match="version"):
        ModelSpec.parse({"name": "a", "runtime": "onnx", "source": "a", "version": MAX_VERSION + 1})
    assert parse_version(str(MAX_VERSION)) == MAX_VERSION
    for value in (str(MAX_VERSION + 1), MAX_VERSION + 1, 2**70):
        with pytest.raises(InvalidInput, match="up to 2147483647"):
            parse_version(value)
