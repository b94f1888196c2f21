"""What `Store.verify` and `Store.gc` report: lists of blob shas (and temp file paths)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VerifyReport:
    """What `Store.verify` found; lists hold blob shas except `temp_files`/`strays` (paths)."""

    checked: int = 0
    corrupt: list[str] = field(default_factory=list)  # indexed, content does not match its sha
    missing: list[str] = field(default_factory=list)  # indexed, not on disk
    orphans: list[str] = field(default_factory=list)  # on disk, no artifact refers to it
    temp_files: list[str] = field(default_factory=list)  # left in tmp/ by interrupted writes
    strays: list[str] = field(default_factory=list)  # files under blobs/ that are not blobs

    @property
    def ok(self) -> bool:
        """True when every indexed artifact reads back intact (orphans and temp files are harmless)."""
        return not self.corrupt and not self.missing


@dataclass
class GcReport:
    """What `Store.gc` removed."""

    orphans: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    bytes_freed: int = 0
