"""The fixed model catalog the embedded upstream offers.

Fixed, because a test double's catalog is part of its contract: the bridge's
ListModels tests compare against it, and chat requests are validated against
its ids. The ``GET /models`` body never changes, so it is encoded once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

import orjson

__all__ = ["CREATED", "MODELS", "MODEL_IDS", "ModelInfo", "models_body"]

CREATED: Final = 1700000000
"""The fixed ``created`` timestamp of every model and every answer."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ModelInfo:
    """One catalog entry."""

    id: str
    name: str
    description: str
    context_length: int

    def to_json(self) -> dict[str, Any]:
        """The entry as MyRouter's ``/models`` lists it."""
        return {
            "id": self.id,
            "object": "model",
            "created": CREATED,
            "owned_by": "myrouter",
            "name": self.name,
            "description": self.description,
            "context_length": self.context_length,
            "pricing": {"prompt": "0", "completion": "0"},
            "architecture": {"modality": "text->text"},
        }


MODELS: Final[tuple[ModelInfo, ...]] = (
    ModelInfo(
        id="myrouter/echo",
        name="Echo",
        description="Deterministic test model: repeats the last user message.",
        context_length=8192,
    ),
    ModelInfo(
        id="myrouter/echo-large",
        name="Echo Large",
        description="Deterministic test model with a larger context window.",
        context_length=131072,
    ),
)

MODEL_IDS: Final[frozenset[str]] = frozenset(model.id for model in MODELS)

_MODELS_BODY: Final = orjson.dumps(
    {"object": "list", "data": [model.to_json() for model in MODELS]}
)


def models_body() -> bytes:
    """The ``GET /models`` response body (precomputed)."""
    return _MODELS_BODY
