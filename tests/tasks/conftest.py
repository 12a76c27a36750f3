"""Fixtures for the tasks tests: the shared read-only data root, seeded generators, a tiny IDX writer."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

# the shared copy sits beside the project (shared/data/README.md); LINTWIN_DATA wins when set
DEFAULT_SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def shared_root() -> Path:
    return Path(os.environ.get("LINTWIN_DATA") or DEFAULT_SHARED)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_root()
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found at {root} (set LINTWIN_DATA to the shared data folder, e.g. ../shared/data)")
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and mtime (ns)."""
    out = {".": (0, root.stat().st_mtime_ns)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module", autouse=True)
def shared_data_untouched():
    """Fails a test module that wrote into, or touched, the read-only shared data folder (shared/data/README.md)."""
    root = shared_root()
    before = snapshot(root) if root.is_dir() else None
    yield
    if before is not None:
        assert snapshot(root) == before, f"a tasks test wrote into {root}"


@pytest.fixture
def gen() -> Callable[[int], torch.Generator]:
    return lambda seed=0: torch.Generator().manual_seed(seed)


@pytest.fixture
def idx_writer() -> Callable[[Path, str, np.ndarray, np.ndarray], None]:
    return write_idx


def write_idx(raw: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write one split in the big-endian IDX layout torchvision's MNIST reader expects (magic 0x803 / 0x801)."""
    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (raw / f"{split}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 0x803, n, h, w) + images.astype(np.uint8).tobytes()
    )
    (raw / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.astype(np.uint8).tobytes())
