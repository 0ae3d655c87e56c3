"""The parts of vector store search on their own: filters, rank fusion, BM25, the HNSW index."""

from __future__ import annotations

import numpy as np
import pytest

from aimass.protocols.vector_stores import SearchRequest
from aimass.search.filters import matches
from aimass.search.fusion import reciprocal_rank_fusion
from aimass.search.index import VectorIndex, open_index
from aimass.search.keyword import BM25

ATTRS = {"topic": "space", "year": 2021, "public": True, "score": 0.5}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"type": "eq", "key": "topic", "value": "space"}, True),
        ({"type": "ne", "key": "topic", "value": "space"}, False),
        ({"type": "gt", "key": "year", "value": 2020}, True),
        ({"type": "lte", "key": "score", "value": 0.5}, True),
        ({"type": "lt", "key": "topic", "value": 3}, False),  # a string is not below a number
        ({"type": "eq", "key": "public", "value": 1}, False),  # True is not 1 here
        ({"type": "eq", "key": "public", "value": True}, True),
        ({"type": "in", "key": "year", "value": [2020, 2021]}, True),
        ({"type": "nin", "key": "year", "value": [2020, 2021]}, False),
        ({"type": "eq", "key": "absent", "value": "x"}, False),
        ({"type": "ne", "key": "absent", "value": "x"}, True),
        ({"type": "nin", "key": "absent", "value": ["x"]}, True),
        (
            {"type": "or", "filters": [
                {"type": "eq", "key": "topic", "value": "food"},
                {"type": "and", "filters": [
                    {"type": "gte", "key": "year", "value": 2021},
                    {"type": "eq", "key": "public", "value": True},
                ]},
            ]},
            True,
        ),
    ],
)  # fmt: skip
def test_filters_follow_openai_comparisons(flt, expected):
    assert matches(flt, ATTRS) is expected
    assert matches(None, ATTRS)


def test_filter_shapes_are_checked_by_the_wire_types():
    def request(flt):
        return SearchRequest.model_validate({"query": "q", "filters": flt})

    assert request({"type": "in", "key": "a", "value": [1, "b"]}).filter_dict()["value"] == [1, "b"]
    for bad in (
        {"type": "eq", "key": "a", "value": [1]},
        {"type": "in", "key": "a", "value": 1},
        {"type": "and", "filters": []},
        {"type": "and", "filters": [{"type": "xx", "key": "a", "value": 1}]},
        {"type": "and", "filters": [{"type": "or", "filters": ["not a filter"]}]},
    ):
        with pytest.raises(ValueError):
            request(bad)
    deep: dict = {"type": "eq", "key": "a", "value": 1}
    for _ in range(10):
        deep = {"type": "and", "filters": [deep]}
    with pytest.raises(ValueError, match="nest"):
        request(deep)


def test_rank_fusion_rewards_agreement_and_scores_one_for_first_everywhere():
    fused = reciprocal_rank_fusion([[1, 2, 3], [1, 3, 4]])
    assert fused[0] == (1, pytest.approx(1.0))
    assert [key for key, _ in fused] == [1, 3, 2, 4]
    assert all(0 < score <= 1 for _, score in fused)
    assert reciprocal_rank_fusion([]) == []


def test_bm25_ranks_by_term_rarity_and_forgets_removed_chunks():
    bm25 = BM25()
    docs = {1: "the zebra runs", 2: "the lion runs fast", 3: "the the the"}
    bm25.add(docs.items())
    assert [k for k, _ in bm25.search("zebra", 5)] == [1]
    assert [k for k, _ in bm25.search("lion zebra", 5)][:2] in ([1, 2], [2, 1])
    assert [k for k, _ in bm25.search("runs", 5, keep=lambda k: k != 1)] == [2]
    bm25.remove([(1, docs[1])])
    assert bm25.search("zebra", 5) == [] and len(bm25) == 2
    assert bm25.search("", 5) == [] and BM25().search("x", 5) == []


def test_index_file_is_used_only_when_it_holds_the_database_chunks(tmp_path):
    rng = np.random.default_rng(0)
    keys = np.arange(1, 201, dtype=np.int64)
    vectors = rng.standard_normal((200, 16)).astype(np.float32)
    reads = []

    def from_db():
        reads.append(1)
        return keys, vectors

    path = tmp_path / "vs.usearch"
    index, rebuilt = open_index(path, 16, keys, from_db)  # no file: built from the database
    assert rebuilt and path.exists() and len(index) == 200
    found, scores = index.search(vectors[7], 3)
    assert found[0] == 8 and scores[0] == pytest.approx(1.0, abs=1e-5)
    _, rebuilt = open_index(path, 16, keys, from_db)
    assert not rebuilt and len(reads) == 1
    _, rebuilt = open_index(path, 16, keys[:-1], lambda: (keys[:-1], vectors[:-1]))
    assert rebuilt  # the database lost a chunk the file has: rebuilt
    path.write_bytes(b"torn")
    index, rebuilt = open_index(path, 16, keys, from_db)
    assert rebuilt and np.array_equal(index.keys(), keys)
    index.remove(np.array([8]))
    assert 8 not in index.search(vectors[7], 3)[0]
    assert VectorIndex(tmp_path / "empty.usearch", 16).search(vectors[0], 5)[0].size == 0


def test_racing_adds_of_one_file_make_one_row(tmp_path):
    import threading

    from aimass.search import records

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    store = records.create_store(
        url, owner_key_id=None, name="s", embedding_model="m", metadata={}, expires_after_days=None
    )
    added = []

    def add() -> None:
        added.append(records.add_file(url, store.id, "file-1", attributes={},
                                      max_chunk_tokens=100, chunk_overlap_tokens=0))  # fmt: skip

    threads = [threading.Thread(target=add) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(new for _, new in added) == [False] * 5 + [True]
    assert len(records.files_of(url, store.id)) == 1


async def test_a_store_of_images_is_rebuilt_from_the_database_after_a_restart(tmp_path):
    """The image index (another width than the text index) lives on image vectors kept on the
    first chunk of each image; without its file, a new server rebuilds it from the rows."""
    from aimass.search import records
    from aimass.search.store import Stores

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    made = records.create_store(
        url, owner_key_id=None, name="s", embedding_model="m", metadata={},
        expires_after_days=None, image_model="img",
    )  # fmt: skip
    rng = np.random.default_rng(1)
    pictures = rng.standard_normal((2, 24)).astype(np.float32)
    stores = Stores(url, tmp_path / "stores")
    for n, file_id in enumerate(["photo-a", "photo-b"]):
        records.add_file(url, made.id, file_id, attributes={}, max_chunk_tokens=100,
                         chunk_overlap_tokens=0)  # fmt: skip
        chunks = [
            records.NewChunk(0, f"{file_id} label", 2, rng.standard_normal(8), pictures[n]),
            records.NewChunk(1, "more text", 2, rng.standard_normal(8)),
        ]
        assert await stores.add_file(made, file_id, {}, chunks, usage=10)
    await stores.save()
    live = await stores.get(made)
    assert [h.file_id for h in await live.image_search(pictures[1], 2)] == ["photo-b", "photo-a"]
    stores.image_path(made.id).unlink()
    again = Stores(url, tmp_path / "stores")
    reopened = await again.get(records.get_store(url, made.id))
    assert reopened.images is not None and len(reopened.images) == 2  # image chunks only
    hit = (await reopened.image_search(pictures[0], 1))[0]
    assert hit.file_id == "photo-a" and hit.score == pytest.approx(1.0, abs=1e-5)
    assert await again.remove_file(made, "photo-a")
    assert [h.file_id for h in await reopened.image_search(pictures[0], 2)] == ["photo-b"]
