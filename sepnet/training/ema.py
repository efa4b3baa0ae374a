"""An exponential moving average (EMA) of a model's weights, kept during training.

After every optimiser step ``n`` (counted from 0) each floating-point tensor of
the model's state (parameters and BatchNorm statistics) is averaged::

    decay_n = min(decay, (1 + n) / (10 + n))
    shadow  = decay_n * shadow + (1 - decay_n) * weight

The warm-up ``(1 + n) / (10 + n)`` keeps the first steps (random weights) from
dominating a short run: the average covers about the last tenth of the steps
until that reaches ``1 / (1 - decay)`` steps. Integer buffers (BatchNorm's step
count) are copied. The average is a cheap ensemble of the last weights along
the trajectory, the merging of checkpoints done during training.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """EMA shadow of ``module.state_dict()``; empty until the first :meth:`update`.

    Args:
        decay: the average's decay per step in (0, 1), e.g. 0.999.
    """

    def __init__(self, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"module.ema_decay must be in (0, 1) or null, got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {}

    def decay_at(self, update: int) -> float:
        """The decay used by the ``update``-th update (0-based)."""
        return min(self.decay, (1 + update) / (10 + update))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Average ``module``'s current weights into the shadow (the first call copies them)."""
        state = module.state_dict()
        if not self.shadow:
            self.shadow = {name: value.detach().clone() for name, value in state.items()}
        else:
            decay = self.decay_at(self.updates)
            for name, value in state.items():
                shadow = self.shadow[name]
                if shadow.device != value.device:  # loaded from a checkpoint on the CPU, training elsewhere
                    shadow = self.shadow[name] = shadow.to(value.device)
                if shadow.is_floating_point():
                    shadow.lerp_(value.detach().to(shadow.dtype), 1.0 - decay)
                else:
                    shadow.copy_(value)
        self.updates += 1

    @contextmanager
    def swapped_in(self, module: nn.Module) -> Iterator[None]:
        """Run the block with the average's weights in ``module``; its own weights come back after."""
        if not self.shadow:
            yield
            return
        own = {name: value.detach().clone() for name, value in module.state_dict().items()}
        module.load_state_dict(self.shadow)
        try:
            yield
        finally:
            module.load_state_dict(own)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: Mapping) -> None:
        self.updates = int(state["updates"])
        self.shadow = {name: value.clone() for name, value in state["shadow"].items()}
