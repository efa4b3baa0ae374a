"""Spectral signal processing: the front end (waveform <-> model input), Wiener post-filter, overlap-add, and whole-file separation jobs built on them."""
