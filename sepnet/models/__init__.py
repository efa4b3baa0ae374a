"""Separation models: spectrogram (batch, channels, bins, frames) -> masks (batch, stems, channels, bins, frames).

The contract every model implements is :mod:`sepnet.models.contract`. No list of models
lives here: each module registers its classes where they are defined
(:func:`sepnet.registry.register_model`), the registry imports every module of this
package before its first look-up, and ``from sepnet.models import CRNN`` finds a class
by its registered public name.
"""

from __future__ import annotations

from typing import Any

from sepnet.models.contract import SeparationModel

__all__ = ["SeparationModel"]


def __getattr__(name: str) -> Any:
    """``sepnet.models.<Name>``: the registered model class of that public name."""
    from sepnet.registry import MODEL, registered

    cls = registered(MODEL).get(f"sepnet.models.{name}")
    if cls is None:
        raise AttributeError(f"module 'sepnet.models' has no attribute '{name}'")
    return cls
