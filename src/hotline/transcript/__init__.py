"""The transcript: the append-only RFC 9162 Merkle log of everything that crossed the link.

Each function takes a SQLAlchemy ``Connection`` and runs in the caller's transaction, so an entry
commits together with the message it records. The Merkle math is :mod:`hotline.core.merkle`; the
hashing, proof and storage formats are in docs/transcript.md.
"""

from hotline.transcript._log import (
    MAX_BATCH_ENTRIES,
    MAX_KIND_LENGTH,
    MAX_LEAVES_PER_REF,
    MAX_LOG_SIZE,
    MAX_REF_LENGTH,
    Appended,
    Leaf,
    NewEntry,
    append,
    consistency_proof,
    inclusion_proof,
    leaf,
    leaves_by_ref,
    root,
    size,
    size_and_root,
)

__all__ = [
    "MAX_BATCH_ENTRIES",
    "MAX_KIND_LENGTH",
    "MAX_LEAVES_PER_REF",
    "MAX_LOG_SIZE",
    "MAX_REF_LENGTH",
    "Appended",
    "Leaf",
    "NewEntry",
    "append",
    "consistency_proof",
    "inclusion_proof",
    "leaf",
    "leaves_by_ref",
    "root",
    "size",
    "size_and_root",
]
