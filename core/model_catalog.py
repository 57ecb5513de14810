"""Known models of the paper's suite: family and architecture filled in when a run names them."""

from __future__ import annotations

MODELS: dict[str, tuple[str, str]] = {
    "llama": ("llm", "transformer-autoregressive"),
    "diffusion-lm": ("llm", "diffusion-masked"),
    "stable-diffusion": ("tti", "diffusion-latent"),
    "imagen": ("tti", "diffusion-pixel"),
    "muse": ("tti", "transformer-parallel"),
    "parti": ("tti", "transformer-autoregressive"),
    "make-a-video": ("ttv", "diffusion-pixel"),
    "phenaki": ("ttv", "transformer-parallel"),
}


def family_and_architecture(name: str) -> tuple[str | None, str | None]:
    return MODELS.get(name.lower(), (None, None))
