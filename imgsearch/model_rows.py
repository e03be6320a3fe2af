"""The rules that tie a model to its row in an index dir: a model is registered once, with its
dimension, preprocessing, precision, weights fingerprint and FAISS index type; a model whose
vectors would not match the stored ones is refused (other dimension or preprocessing) or, when
only its weights changed, re-embeds. Writers and readers share them."""

from __future__ import annotations

import os

from .errors import IndexMismatch
from .models import slug
from .models.base import EmbeddingModel
from .store import ModelRow, Store
from .vectors import DEFAULT_FACTORY, validate_factory


def register_model(store: Store, model: EmbeddingModel, factory: str | None,
                   notes: list[str] | None = None) -> ModelRow:
    """The model's row, created on first use; refuses an index built with other preprocessing.
    Vectors made from other weights (a checkpoint re-saved at the same path) are deleted so
    that the run embeds every image again; notes gets a line saying so."""
    row = store.model(model.spec)
    fingerprint = model.fingerprint()
    if row is None:
        with store.atomic():
            return store.add_model(
                model.spec, model.family, model.dim, model.precision, model.preprocess_config(),
                model.versions(), validate_factory(factory or DEFAULT_FACTORY, model.dim),
                slug(model.spec) + ".faiss", fingerprint,
            )
    check_compatible(row, model)
    if row.fingerprint != fingerprint:
        with store.atomic():
            dropped = store.delete_model_embeddings(row.id) if row.fingerprint is not None else 0
            store.update_model(row.id, fingerprint=fingerprint, versions=model.versions())
            store.bump_generation(row.id)
        if dropped and notes is not None:
            notes.append(f"{model.spec}: its weights changed since this index was built ({row.fingerprint} -> "
                         f"{fingerprint}); its {dropped} vectors are embedded again")
        row = store.model(model.spec)
    if factory and factory != row.factory:
        validate_factory(factory, model.dim)
        old_file = os.path.join(store.index_dir, row.index_file)
        if os.path.exists(old_file):
            os.unlink(old_file)  # of the old type: rebuilt from SQLite in the new one on load
        with store.atomic():
            store.update_model(row.id, factory=factory, faiss_generation=-1)
        row = store.model(model.spec)
    return row


def check_compatible(row: ModelRow, model: EmbeddingModel) -> None:
    if row.dim != model.dim:
        raise IndexMismatch(f"index for {row.spec} has dimension {row.dim}, the model gives {model.dim}")
    if row.preprocess != model.preprocess_config():
        raise IndexMismatch(
            f"index for {row.spec} was built with other preprocessing ({_diff(row.preprocess, model.preprocess_config())}); "
            "index into a new --index-dir, or delete this model's index with `imgsearch drop`"
        )


def check_same_weights(row: ModelRow, model: EmbeddingModel) -> None:
    """A reader's rule: query vectors from other weights than the stored ones are meaningless."""
    check_compatible(row, model)
    if row.fingerprint is not None and row.fingerprint != model.fingerprint():
        raise IndexMismatch(
            f"index for {row.spec} was built from other weights ({row.fingerprint}, now {model.fingerprint()}); "
            "run `imgsearch index` again to re-embed with these weights"
        )


def _diff(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:3])
