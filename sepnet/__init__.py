"""sepnet: an experiment framework for spectrogram-mask music source separation.

Hydra composes a run from ``conf/``, PyTorch Lightning trains it, museval scores
it. Every entry point is ``python -m sepnet.<name>``; from Python,
``sepnet.load(ckpt).separate(audio, rate)`` separates arrays at any sample rate
(:mod:`sepnet.api`). Importing sepnet or any of
its modules only imports: process settings (OpenMP's wait policy) are chosen by
the entry points (``sepnet.app.wait_policy``).
"""

__version__ = "0.1.0"

STEMS = ("bass", "drums", "other", "vocals")
"""The MUSDB18 stems, in the order every tensor's stem axis uses."""

__all__ = ["STEMS", "Model", "__version__", "load"]
_API = {"load", "Model"}
"""The Python API (:mod:`sepnet.api`), imported on first use so ``import sepnet`` loads no torch."""


def __getattr__(name: str):
    """``sepnet.load`` and ``sepnet.Model``: :mod:`sepnet.api`'s, imported when first asked for."""
    if name in _API:
        from sepnet import api

        return getattr(api, name)
    raise AttributeError(f"module 'sepnet' has no attribute '{name}'")
