"""The model registry's types: a :class:`ModelSpec` per model, :class:`Knobs` the sweepable settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Knobs:
    """What the paper sweeps.  ``None``: the scale's default (or not applicable to the model)."""

    batch: int = 1
    image_size: int | None = None
    frames: int | None = None
    steps: int | None = None
    decode_tokens: int | None = None
    text_length: int | None = None

    def over(self, other: Knobs | None) -> Knobs:
        """``other``'s set values win (``batch`` always comes from ``other`` when given)."""
        if other is None:
            return self
        return replace(
            self, **{f.name: getattr(other, f.name) for f in fields(other) if getattr(other, f.name) is not None}
        )

    def required(self) -> RequiredKnobs:
        """The knobs as a model's ``run`` reads them: set, as numbers."""
        return RequiredKnobs(self)


def _required(value: int | None, knob: str) -> int:
    if value is None:
        raise ValueError(f"knob {knob} is unset: the model's scale defaults should give it a value")
    return value


@dataclass(frozen=True)
class RequiredKnobs:
    """A model reads only the knobs it has, and its scale's defaults set each of them: a missing
    one is a spec bug, raised with its name here instead of as ``None`` arithmetic in the model."""

    knobs: Knobs

    @property
    def batch(self) -> int:
        return self.knobs.batch

    @property
    def image_size(self) -> int:
        return _required(self.knobs.image_size, "image_size")

    @property
    def frames(self) -> int:
        return _required(self.knobs.frames, "frames")

    @property
    def steps(self) -> int:
        return _required(self.knobs.steps, "steps")

    @property
    def decode_tokens(self) -> int:
        return _required(self.knobs.decode_tokens, "decode_tokens")

    @property
    def text_length(self) -> int:
        return _required(self.knobs.text_length, "text_length")


@dataclass
class RunContext:
    device: torch.device
    dtype: torch.dtype
    knobs: Knobs
    generator: torch.Generator
    # Filled in by the pipeline: anything worth recording in the manifest's tags.
    notes: dict[str, Any] = field(default_factory=dict)
    # Manifest fields the pipeline derives (e.g. parti's decode_tokens = image tokens).
    meta: dict[str, Any] = field(default_factory=dict)

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator, device="cpu").to(self.device, self.dtype)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=self.generator, device="cpu").to(self.device)


@dataclass(frozen=True)
class ModelSpec:
    name: str  # family and architecture come from tracehouse.core.model_catalog
    configs: dict[str, Any]  # scale -> config object (has a ``knobs: Knobs`` default)
    build: Callable[[Any], dict[str, nn.Module]]
    run: Callable[[dict[str, nn.Module], Any, RunContext], None]
    # Published parameter counts of paper-scale components: component -> (count, rel. tolerance).
    published: dict[str, tuple[int, float]] = field(default_factory=dict)
    published_note: str = ""
    knob_names: tuple[str, ...] = ()  # the knobs that mean something for this model

    def config(self, scale: str) -> Any:
        try:
            return self.configs[scale]
        except KeyError:
            raise ValueError(f"{self.name}: unknown scale {scale!r}; known: {sorted(self.configs)}") from None
