"""sepnet: an experiment framework for spectrogram-mask music source separation.

Hydra composes a run from ``conf/``, PyTorch Lightning trains it, museval scores
it. Every entry point is ``python -m sepnet.<name>``.
"""

import os

# PyTorch's CPU thread pool (OpenMP) busy-waits at every barrier by default. On a
# small machine shared with anything else (a data worker, a second DDP process, a
# test running beside training) one descheduled thread then stalls all the others:
# measured here, a 2-thread CRNN step went from 0.48 s to 7-35 s. Passive waiting
# removes that cliff. It must be set before torch loads OpenMP, so it lives here,
# before any sepnet module imports torch; a value the user exported wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

STEMS = ("bass", "drums", "other", "vocals")
"""The MUSDB18 stems, in the order every tensor's stem axis uses."""
