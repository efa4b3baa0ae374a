"""sepnet: an experiment framework for spectrogram-mask music source separation.

Hydra composes a run from ``conf/``, PyTorch Lightning trains it, museval scores
it. Every entry point is ``python -m sepnet.<name>``. Importing sepnet or any of
its modules only imports: process settings (OpenMP's wait policy) are chosen by
the entry points (``sepnet.app.wait_policy``).
"""

__version__ = "0.1.0"

STEMS = ("bass", "drums", "other", "vocals")
"""The MUSDB18 stems, in the order every tensor's stem axis uses."""
