"""The optional C Kineto scanner (ingest/kineto_native.py); everything else is in pyproject.toml.

It is declared here rather than in pyproject.toml because setuptools' table for extension
modules there is still experimental and warns on every install.  Optional: without a C
compiler the install still succeeds and ingest takes the msgspec path, only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tracehouse.ingest._kineto_scan",
            sources=["ingest/_kineto_scan.c"],
            depends=["ingest/_kineto_json.h", "ingest/_kineto_arrow.h", "ingest/_kineto_table.h"],
            optional=True,
        )
    ]
)
