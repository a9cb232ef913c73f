"""The HDF5 spill: one rank's file (:mod:`.format`), a directory of versions
(:mod:`.directory`) and the restart search over it (:mod:`.restart`), the helper process that
writes (:mod:`.writer`) and, under MPI, the disk tier that owns them all (:mod:`.tier`,
imported on its own since it needs MPI).

The names below need no MPI.
"""

from ..errors import SpillError
from .directory import (
    DONE,
    INDEX,
    commit,
    commit_index,
    complete_versions,
    load,
    mark_done,
    prune,
    read_index,
    write_version_file,
)
from .format import rank_file, read_rank_file, version_dir, write_rank_file
from .listing import verify
from .restart import Restart, find_restart

__all__ = [
    "DONE",
    "INDEX",
    "Restart",
    "SpillError",
    "commit",
    "commit_index",
    "complete_versions",
    "find_restart",
    "load",
    "mark_done",
    "prune",
    "rank_file",
    "read_index",
    "read_rank_file",
    "verify",
    "version_dir",
    "write_rank_file",
    "write_version_file",
]
