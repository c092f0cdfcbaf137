"""Shared by the fuzz targets: fixed test identities, seed corpora, and the run loop.

Every target follows one contract (docs/benchmarks.md, "Fuzzing"):

- the only exceptions a parser may raise on any input are ``HotlineError`` subclasses (the
  documented typed errors); anything else escapes ``TestOneInput`` and libFuzzer reports it as a
  crash, with the input saved under ``fuzz/artifacts/<target>/``;
- a target over signed bytes knows the valid objects it seeded its corpus with; if a parser ever
  *accepts* bytes that are not one of them, it raises ``Forgery`` (an accepted forgery). The
  runner (``fuzz/run_all.py``) counts those apart from crashes.

Seed corpora are made here, in code, from valid objects (no binary blobs in the repository): a
fresh temporary corpus per run, so that envelopes sealed in an earlier run (HPKE is randomized)
can never be mistaken for a forgery of this run's.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import atheris

# Imported by each target inside its ``atheris.instrument_imports`` block, which instruments
# these too (a nested block here would end the instrumentation of the target's own imports).
from hotline.core.card import Identity
from hotline.core.keys import DecryptionKey, SigningKey
from hotline.errors import HotlineError

NOW = datetime(2026, 11, 26, 3, 12, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent


class Forgery(AssertionError):
    """A parser accepted bytes that are not one of the valid objects the target made."""


def _seed(label: str, size: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"hotline fuzz {label} {counter}".encode()).digest()
        counter += 1
    return out[:size]


def identity(name: str) -> Identity:
    """A node identity from fixed seeds: the same keys on every run and machine."""
    return Identity(
        name,
        SigningKey(_seed(f"{name} ed25519", 32), _seed(f"{name} mldsa", 32)),
        DecryptionKey(_seed(f"{name} mlkem", 64), _seed(f"{name} x25519", 32)),
    )


def run(name: str, test_one_input: Callable[[bytes], None], seeds: Iterable[bytes]) -> None:
    """Write ``seeds`` as a fresh corpus and hand the process to libFuzzer.

    Extra libFuzzer flags come from the command line (``-runs=N``, ``-max_total_time=S``...).
    """
    corpus = Path(tempfile.mkdtemp(prefix=f"hotline-fuzz-{name}-"))
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i:04d}").write_bytes(seed)
    artifacts = ROOT / "artifacts" / name
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.argv[0],
        f"-artifact_prefix={artifacts}{os.sep}",
        "-print_final_stats=1",
        *sys.argv[1:],
        str(corpus),
    ]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def typed_errors_only(parse: Callable[[bytes], object]) -> Callable[[bytes], object | None]:
    """``parse``, with the documented typed errors turned into None (anything else escapes)."""

    def wrapped(data: bytes) -> object | None:
        try:
            return parse(data)
        except HotlineError:
            return None

    return wrapped


__all__ = ["NOW", "Forgery", "identity", "run", "typed_errors_only"]
