"""How large an archive may be, and how far its members may decompress."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_RATIO = 100
DEFAULT_DECOMPRESSED_FACTOR = 16
# Below this many output bytes the ratio is not judged: tiny members compress oddly.
RATIO_GRACE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """How large an archive may be, and how far it may decompress."""

    max_size: int
    max_decompressed: int
    max_ratio: float

    @classmethod
    def from_config(cls, config) -> "Limits":
        """``MAX_BACKUP_SIZE``, plus ``BACKUP_MAX_DECOMPRESSED_SIZE`` and ``BACKUP_MAX_COMPRESSION_RATIO``.

        By default an archive may decompress to 16 times ``MAX_BACKUP_SIZE`` at a
        ratio of at most 100:1 (JSON rows deflate about 5:1; bombs reach 1000:1).
        """
        max_size = int(config.get("MAX_BACKUP_SIZE") or 512 * 1024 * 1024)
        max_decompressed = int(config.get("BACKUP_MAX_DECOMPRESSED_SIZE")
                               or max(max_size * DEFAULT_DECOMPRESSED_FACTOR, 64 * 1024 * 1024))
        max_ratio = float(config.get("BACKUP_MAX_COMPRESSION_RATIO") or DEFAULT_MAX_RATIO)
        return cls(max_size, max_decompressed, max_ratio)

    def ratio_exceeded(self, decompressed: int, compressed: int) -> bool:
        """True when ``decompressed`` bytes from ``compressed`` ones exceed ``max_ratio`` (past the grace size)."""
        return decompressed > RATIO_GRACE_BYTES and decompressed > self.max_ratio * max(compressed, 1)
