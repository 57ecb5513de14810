"""tracehouse.collectors: the paper's model suite under ``torch.profiler``.

- ``annotate``: profiler/NVTX ranges in the store's annotation convention, annotated layers.
- ``models``: the suite (llama, stable-diffusion, imagen, muse, parti, make-a-video, phenaki,
  diffusion-lm), each with ``tiny`` and ``paper`` configs, random initialisation.  llama,
  stable-diffusion and make-a-video are the library implementations (transformers / diffusers,
  built from configs, offline; ``models.hf``); the rest are own modules (``models.blocks``).
- ``profile.collect_one``: one profiled run -> ``<out>/<name>.json.gz`` + ``<name>.manifest.json``.
- ``cli.collect``: the ``tracehouse collect`` command (imports without torch).
- ``python -m tracehouse.collectors.run``: an argparse entry point needing only torch.

Nothing here is imported by the service or ingest; torch is the ``collect`` extra.
"""
