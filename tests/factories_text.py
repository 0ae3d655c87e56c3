"""Tiny random text models (BERT-shaped) built in about a second, for unit and integration tests.

No model ships for reranking and tests must not download, so each factory builds a model
from a small ``BertConfig`` with a tokenizer made from a vocabulary file written here. The
vocabulary holds letters and ``##`` word pieces, so any lower-case ASCII text tokenizes.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

WORDS = [
    *("the", "a", "an", "is", "are", "was", "of", "to", "in", "on", "and", "or", "for"),
    *("with", "what", "how", "why", "who", "where", "when", "cat", "dog", "cats", "dogs"),
    *("eat", "eats", "food", "man", "woman", "city", "paris", "france", "capital"),
    *("weather", "rain", "sun", "hello", "world", "quick", "brown", "fox", "jumps", "over"),
    *("lazy", "machine", "learning", "model", "models", "query", "document", "search"),
    *("fast", "slow", "good", "bad", "best"),
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = list(".,!?;:'\"()-")
SENTENCES = [
    "the quick brown fox jumps over the lazy dog.",
    "a man is eating food.",
    "what is the capital of france?",
    "hello world",
    "paris is the capital of france, a city with rain and sun.",
    "machine learning models are fast; some are slow!",
    "dogs and cats",
    "x",
]


def vocabulary() -> list[str]:
    letters = list(string.ascii_lowercase + string.digits)
    return list(dict.fromkeys(SPECIALS + PUNCT + letters + [f"##{c}" for c in letters] + WORDS))


def save_tokenizer(path: Path, max_length: int) -> None:
    """A WordPiece BertTokenizer from our vocabulary file, saved with ``tokenizer.json``."""
    from transformers import BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(vocabulary()) + "\n")
    tokenizer = BertTokenizerFast(str(vocab_file), do_lower_case=True)
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(str(path))


def _config(max_positions: int, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(vocabulary()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        **extra,
    )


def tiny_encoder(
    path: Path,
    *,
    sentence_transformers: bool = True,
    max_length: int = 32,
    seed: int = 0,
    pooling: str = "mean",
) -> Path:
    """A random BertModel; with ``sentence_transformers`` the ST files (mean pooling, Normalize)."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    model = BertModel(_config(64)).eval()
    model.save_pretrained(str(path))
    save_tokenizer(path, max_length)
    if sentence_transformers:
        _write_st_files(path, max_length, pooling)
    return path


def _write_st_files(path: Path, max_length: int, pooling: str) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": False})
    )
    flags = {
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
    }
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, **flags})
    )
    (path / "2_Normalize").mkdir(exist_ok=True)


def tiny_classifier(
    path: Path, *, labels: list[str] | None = None, max_length: int = 48, seed: int = 0
) -> Path:
    """A random BertForSequenceClassification: one label makes it a cross-encoder."""
    import torch
    from transformers import BertForSequenceClassification

    labels = labels or ["relevance"]
    torch.manual_seed(seed)
    config = _config(
        64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # spread the scores so their order is not decided by rounding
        model.classifier.weight.mul_(50)
    model.save_pretrained(str(path))
    save_tokenizer(path, max_length)
    return path


def reference_scores(path: Path, pairs: list[tuple[str, str]]):
    """The model's own logits for (query, document) pairs, via transformers, as numpy."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    batch = tokenizer(
        [q for q, _ in pairs],
        [d for _, d in pairs],
        padding=True,
        truncation=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        return model(**batch).logits.numpy()
