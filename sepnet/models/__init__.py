"""Mask-estimation networks: (batch, channels, bins, frames) -> masks (batch, stems, channels, bins, frames)."""

from sepnet.models.band_split import BandSplitRNN
from sepnet.models.crnn import CRNN
from sepnet.models.unet_crnn import MultiTaskUNetCRNN, UNetCRNN

__all__ = ["CRNN", "BandSplitRNN", "MultiTaskUNetCRNN", "UNetCRNN"]
