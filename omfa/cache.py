"""A bounded LRU of condition keys/values, shared across requests.

A condition slot's per-layer keys/values depend only on its image, its slot
and the model (see `omfa.denoiser`), so the same garment or portrait reused
across a pose gallery, a retry with another seed, or both guidance branches
costs one encoder pass. Entries are keyed by content (a hash of the exact
tensor bytes), never by user-supplied names, and evicted by total bytes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch

from omfa.denoiser import ConditionKV


def tensor_digest(x: torch.Tensor) -> str:
    """Content hash of a tensor's values, dtype and shape."""
    data = x.detach().to("cpu").contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{data.dtype}{tuple(data.shape)}".encode())
    h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return h.hexdigest()


class ConditionCache:
    """Thread-safe LRU of `ConditionKV` entries bounded by `max_bytes`."""

    def __init__(self, max_bytes: int = 256 * 2**20):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, ConditionKV] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get_or_compute(self, key: Hashable, compute: Callable[[], ConditionKV]) -> ConditionKV:
        """Return the cached entry for `key`, computing and storing it on a miss.

        The computation runs outside the lock so concurrent requests for other
        keys are not serialised behind it; two racing misses on one key both
        compute the same value and the second store is a no-op.
        """
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        value = compute()
        size = value.nbytes
        with self._lock:
            if key not in self._entries and size <= self.max_bytes:
                self._entries[key] = value
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, old = self._entries.popitem(last=False)
                    self._bytes -= old.nbytes
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self.hits = self.misses = 0
