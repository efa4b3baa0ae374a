"""Mask-estimation networks: (batch, channels, bins, frames) -> masks (batch, stems, channels, bins, frames)."""

from sepnet.models.crnn import CRNN

__all__ = ["CRNN"]
