"""Open-Unmix (the ``openunmix`` package, 1.3.0) for the benchmarks, imported without torchaudio.

``openunmix`` imports torchaudio at import time (``transforms.py``, ``utils.py``), and
torchaudio's registry wheels are built against CUDA torch and fail to import next to the
CPU wheel. Nothing the benchmarks use calls it: the model classes, the ``torch``
filterbank (``TorchSTFT``/``TorchISTFT`` are torch.stft/istft) and ``bandwidth_to_max_bin``.
So an empty stand-in module goes into ``sys.modules["torchaudio"]`` before the import,
always (also where torchaudio is installed), so the peer runs the same everywhere.
Installed with ``pip install --no-deps openunmix==1.3.0 tqdm`` (``make install`` does it):
its declared torchaudio requirement would otherwise replace the CPU torch wheel.
"""

from __future__ import annotations

import sys
import types


def openunmix():
    """The ``openunmix`` package with ``model``, ``transforms``, ``filtering`` and ``utils`` imported."""
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    try:
        import openunmix as package
        import openunmix.filtering
        import openunmix.model
        import openunmix.transforms
        import openunmix.utils
    except ImportError as exc:
        raise SystemExit(
            f"the peer benchmarks need Open-Unmix ({exc}); install it with "
            "`pip install --no-deps openunmix==1.3.0 tqdm` (or `make install`)"
        ) from None
    return package
