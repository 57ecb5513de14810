"""The model suite.  ``get_spec(name)`` / ``MODELS`` (name -> module path, imported lazily)."""

from __future__ import annotations

import importlib

# name -> (module, short name used in trace file names)
MODELS: dict[str, tuple[str, str]] = {
    "llama": ("llama", "llama"),
    "stable-diffusion": ("sd", "sd"),
    "imagen": ("imagen", "imagen"),
    "muse": ("muse", "muse"),
    "parti": ("parti", "parti"),
    "make-a-video": ("video", "mav"),
    "phenaki": ("phenaki", "phenaki"),
    "diffusion-lm": ("dlm", "dlm"),
}
ALIASES = {
    "sd": "stable-diffusion",
    "mav": "make-a-video",
    "dlm": "diffusion-lm",
    "llada": "diffusion-lm",
    "llama2": "llama",
}
SUITE = tuple(MODELS)


def canonical(name: str) -> str:
    name = name.strip().lower()
    name = ALIASES.get(name, name)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return name


def short_name(name: str) -> str:
    return MODELS[canonical(name)][1]


def get_spec(name: str):
    module = importlib.import_module(f"tracehouse.collectors.models.{MODELS[canonical(name)][0]}")
    return module.SPEC
