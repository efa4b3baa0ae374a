"""HTDemucs (the ``demucs`` package, 4.0.1) for the full-band peer benchmark, imported without torchaudio.

``demucs`` declares torchaudio (and dora-search's whole tree), but ``demucs.htdemucs`` and
``demucs.apply`` (the model and its own chunked inference) never call torchaudio: the same
empty stand-in module as :mod:`umx` puts into ``sys.modules["torchaudio"]`` (through :func:`umx.openunmix`) first. Installed with
``pip install --no-deps demucs==4.0.1 julius dora-search treetable retrying`` plus Open-Unmix
(``make install`` does it): its declared requirements would otherwise replace the CPU torch wheel.
"""

from __future__ import annotations

from umx import openunmix


def htdemucs():
    """``(HTDemucs, apply_model)``: the Hybrid Transformer Demucs class and demucs' overlap-add inference."""
    openunmix()  # demucs imports openunmix.filtering; this also puts the torchaudio stand-in in place
    try:
        from demucs.apply import apply_model
        from demucs.htdemucs import HTDemucs
    except ImportError as exc:
        raise SystemExit(
            f"the full-band peer benchmark needs Demucs ({exc}); install it with `pip install --no-deps "
            "demucs==4.0.1 julius dora-search treetable retrying openunmix==1.3.0` (or `make install`)"
        ) from None
    return HTDemucs, apply_model
