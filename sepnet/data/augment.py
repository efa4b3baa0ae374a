"""Training-time augmentation: small transforms of one example's stems, built from ``conf/augment/``.

Every transform takes the stems of one training example ``(stems, channels,
samples)`` float32 and the example's own generator (seeded by ``(seed, epoch,
index)``, see :mod:`sepnet.data.datamodule`), and returns the augmented stems. The array is
the example's own fresh copy, so transforms work in place (no copies of 3 s of
audio per step). The data module rebuilds the
mixture as the sum of the augmented stems, so mixture and targets always agree.
Validation and test data are never augmented.

:class:`Augment` bundles them as the ``augment=`` group configures them:

    augment=none            nothing
    augment=remix           per-epoch remixing, random gain, channel swap
    augment=remix_silence   remix + target-stem silencing

Remixing (``augment.remix_prob``) is a choice of *which* audio forms the example
(each stem from its own random track and offset), so :class:`~sepnet.data.datamodule.RandomChunks`
asks :meth:`Augment.remix` before cutting the chunk; the transforms run after.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from sepnet.errors import SepnetError


def _probability(value: float, key: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise SepnetError(f"{key}={value} is not a probability; use a value in [0, 1]")
    return value


class RandomGain:
    """Scale every stem by its own gain drawn uniformly from ``[low, high]``.

    Args:
        low: smallest gain (linear).
        high: largest gain (linear).
    """

    def __init__(self, low: float = 0.25, high: float = 1.25):
        if not 0.0 <= low <= high:
            raise SepnetError(f"augment.gain needs 0 <= low <= high, got low={low}, high={high}")
        self.low, self.high = float(low), float(high)

    def __call__(self, stems: np.ndarray, rng: np.random.Generator, targets: np.ndarray) -> np.ndarray:
        gains = rng.uniform(self.low, self.high, size=stems.shape[0]).astype(np.float32)
        stems *= gains[:, None, None]
        return stems


class _PerStemCoin:
    """Apply :meth:`change` to each stem, independently, with probability ``prob``.

    One uniform draw per stem (``stems``: (stems, channels, samples)), so a seeded
    generator picks the same stems whatever the change is.
    """

    KEY: ClassVar[str]

    def __init__(self, prob: float = 0.5):
        self.prob = _probability(prob, self.KEY)

    def change(self, stem: np.ndarray) -> np.ndarray:
        """The changed copy of one (channels, samples) stem."""
        raise NotImplementedError

    def __call__(self, stems: np.ndarray, rng: np.random.Generator, targets: np.ndarray) -> np.ndarray:
        chosen = rng.random(stems.shape[0]) < self.prob
        for i in np.flatnonzero(chosen):
            stems[i] = self.change(stems[i])
        return stems


class ChannelSwap(_PerStemCoin):
    """Swap left and right of each stem, independently, with probability ``prob``."""

    KEY = "augment.channel_swap.prob"

    def change(self, stem: np.ndarray) -> np.ndarray:
        return stem[::-1].copy()


class SignFlip(_PerStemCoin):
    """Invert the polarity of each stem, independently, with probability ``prob``."""

    KEY = "augment.sign_flip.prob"

    def change(self, stem: np.ndarray) -> np.ndarray:
        return -stem


class SilenceStems:
    """Target-stem silencing: teach the model what "only the target" and "no target" sound like.

    With probability ``others_prob`` every non-target stem is zeroed (mixture =
    target); otherwise, with probability ``target_prob``, the target stems are
    zeroed (mixture = accompaniment, "vocals silent" training). The
    two never happen together. Needs ``data.target_stems`` to leave at least one
    stem out; with every stem a target it does nothing.

    Args:
        others_prob: probability that only the targets sound.
        target_prob: probability that the targets are silent.
    """

    def __init__(self, others_prob: float = 0.1, target_prob: float = 0.1):
        self.others_prob = _probability(others_prob, "augment.silence.others_prob")
        self.target_prob = _probability(target_prob, "augment.silence.target_prob")
        if self.others_prob + self.target_prob > 1.0:
            raise SepnetError(
                f"augment.silence.others_prob + target_prob = {self.others_prob + self.target_prob:g} > 1; "
                "the two events exclude each other, so their sum must be at most 1"
            )

    def __call__(self, stems: np.ndarray, rng: np.random.Generator, targets: np.ndarray) -> np.ndarray:
        u = rng.random()
        if targets.all() or not targets.any():
            return stems
        if u < self.others_prob:
            silent = ~targets
        elif u < self.others_prob + self.target_prob:
            silent = targets
        else:
            return stems
        stems[silent] = 0.0
        return stems


class Augment:
    """What happens to a training example, in order: remix choice, gain, channel swap, sign flip, silencing.

    Args:
        remix_prob: probability that each stem of an example comes from its own
            randomly drawn track and offset (new combinations every epoch);
            otherwise all stems come from one track, aligned.
        gain: a :class:`RandomGain`, or None.
        channel_swap: a :class:`ChannelSwap`, or None.
        sign_flip: a :class:`SignFlip`, or None.
        silence: a :class:`SilenceStems`, or None.
    """

    def __init__(
        self,
        remix_prob: float = 0.0,
        gain: RandomGain | None = None,
        channel_swap: ChannelSwap | None = None,
        sign_flip: SignFlip | None = None,
        silence: SilenceStems | None = None,
    ):
        self.remix_prob = _probability(remix_prob, "augment.remix_prob")
        self.gain = gain
        self.channel_swap = channel_swap
        self.sign_flip = sign_flip
        self.silence = silence

    @property
    def transforms(self) -> list:
        return [t for t in (self.gain, self.channel_swap, self.sign_flip, self.silence) if t is not None]

    def remix(self, rng: np.random.Generator) -> bool:
        """Whether this example is a remix (draws from ``rng`` only when remixing is on)."""
        return self.remix_prob > 0 and bool(rng.random() < self.remix_prob)

    def __call__(self, stems: np.ndarray, rng: np.random.Generator, targets: np.ndarray) -> np.ndarray:
        """Augment one example.

        Args:
            stems: ``(stems, channels, samples)`` float32, owned by the caller's
                example (modified in place).
            rng: the example's generator.
            targets: ``(stems,)`` bool, True for the stems in ``data.target_stems``.

        Returns:
            ``(stems, channels, samples)`` float32, C-contiguous.
        """
        stems = np.require(stems, dtype=np.float32, requirements=["C", "W"])
        for transform in self.transforms:
            stems = transform(stems, rng, targets)
        return stems
