"""The scheme parameters as command-line options, for ``mpickpt layout`` and the examples.

One set of defaults: an option left out takes the scheme class's own default (the one its
constructor declares, which the library uses too), so the command line, the examples and a
call of :func:`mpickpt.resilient` without parameters configure the same scheme. No MPI here.
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from . import registry

# option -> what it sets, for the schemes that take it
OPTIONS = {
    "group": "parity/rs: subsegments per stripe; xorset: ranks per set",
    "backups": "parity/stripe/rs: backups per owner",
    "copies": "mirror: full copies, one per backup",
    "parity": "rs: coding pieces per stripe",
    "subsegments": "parity/stripe/rs: subsegments per segment",
}
# what a default of None means: the parameter follows from the others
DERIVED = {
    ("parity", "subsegments"): "group x backups",
    ("rs", "backups"): "group + parity",
    ("rs", "subsegments"): "group x backups",
    ("stripe", "subsegments"): "backups",
}


def scheme_defaults(scheme_id: str) -> dict[str, Any]:
    """The parameters of the scheme ``scheme_id`` and their defaults (``None``: derived from
    the others, see :data:`DERIVED`), read from its constructor."""
    signature = inspect.signature(registry[scheme_id].__init__)
    return {n: p.default for n, p in signature.parameters.items() if n != "self"}


def describe_default(scheme_id: str, name: str) -> str:
    """The default of one parameter in words: a number, or how it follows from the others."""
    value = scheme_defaults(scheme_id)[name]
    return DERIVED[(scheme_id, name)] if value is None else str(value)


def add_scheme_options(parser: argparse.ArgumentParser) -> None:
    """``--scheme`` and the parameters of every scheme, each defaulting to the scheme's own."""
    parser.add_argument(
        "--scheme", default="parity", choices=sorted(registry), help="the redundancy scheme"
    )
    for name, what in OPTIONS.items():
        takes = [sid for sid in sorted(registry) if name in scheme_defaults(sid)]
        default = ", ".join(f"{sid} {describe_default(sid, name)}" for sid in takes)
        parser.add_argument(
            f"--{name}",
            type=int,
            default=argparse.SUPPRESS,  # absent unless given: the scheme's default applies
            help=f"{what} (default: {default})",
        )


def scheme_params(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters given on the command line that ``args.scheme`` takes."""
    return {n: getattr(args, n) for n in scheme_defaults(args.scheme) if hasattr(args, n)}
