"""Redundancy schemes and their registry (found by id, configured from JSON)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import UnknownSchemeError
from .base import Scheme, xor_into
from .mirror import Mirror
from .parity import Parity
from .rs import ReedSolomon
from .stripe import Stripe
from .xorset import XorSet

registry: dict[str, type[Scheme]] = {}


def register(cls: type[Scheme]) -> type[Scheme]:
    """Make a scheme class available by its ``scheme_id``."""
    registry[cls.scheme_id] = cls
    return cls


for _cls in (Parity, Mirror, Stripe, ReedSolomon, XorSet):
    register(_cls)


def get_scheme(config: str | Mapping[str, Any] | Scheme, **params: Any) -> Scheme:
    """A scheme from an instance, an id plus parameters, or a JSON config with ``id``."""
    if isinstance(config, Scheme):
        return config
    if isinstance(config, str):
        config = {"id": config, **params}
    sid = config.get("id")
    if sid not in registry:
        raise UnknownSchemeError(
            f"unknown scheme {sid!r}; known schemes: {', '.join(sorted(registry))}"
        )
    return registry[str(sid)].from_config(config)


__all__ = [
    "Scheme",
    "Parity",
    "Mirror",
    "Stripe",
    "XorSet",
    "ReedSolomon",
    "get_scheme",
    "register",
    "registry",
    "xor_into",
]
