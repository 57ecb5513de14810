"""A kernel's base name: the function's namespace and name, without its return type, template
arguments or parameter list.  Kernel-name rules match this, never the whole signature: a
demangled name runs to kilobytes of template arguments and parameter types, where ``gemm``
turns up inside ``fbgemm_gpu::...`` arguments and ``add`` inside ``at::TensorIteratorBase``.

Handles demangled C++ (``void at::native::(anonymous namespace)::foo<float, 4>(int, ...)``,
``std::enable_if<...>::type internal::gemvx::kernel<...>(...)``), plain symbols
(``ampere_sgemm_128x64_nn``, ``triton_poi_fused_add_0``) and Itanium-mangled names
(``_ZN19cutlass_cudnn_train6KernelI...``), shallowly: enough for the name, not a demangler.

A generic launcher (``cutlass::Kernel<Op>``, ``cutlass::device_kernel<Op>``) says nothing by
itself; its first template argument is the real kernel, so the *rule name* keeps that one
argument's base name: ``cutlass::Kernel<cutlass_80_tensorop_s1688gemm_64x64_nn_align4>``.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Scopes written with brackets that are part of a name, not a template or parameter list.
_NAMED_SCOPES = ("(anonymous namespace)", "<unnamed>", "{anonymous}")
_SCOPE_OPENERS = frozenset(s[0] for s in _NAMED_SCOPES)
_RETURN_TYPE = re.compile(r"^(?:__global__\s+)?(?:void|[\w:]+::type)\s+")
_WRAPPER = re.compile(r"(?:^|::)(?:Kernel2?|device_kernel)$")
_WRAPPER_SCOPE = re.compile(r"^cutlass\w*::")
_MANGLED_ID = re.compile(r"(\d+)")


def base_name(name: str) -> str:
    """Namespace and function name of a kernel name (see the module docstring)."""
    base, _ = _split(name)
    return base


@lru_cache(maxsize=65536)
def rule_name(name: str) -> str:
    """What the kernel-name rules match: the base name, plus the first template argument's base
    name for a generic launcher such as ``cutlass::Kernel<...>``."""
    base, first_arg = _split(name)
    if first_arg and _WRAPPER.search(base) and _WRAPPER_SCOPE.match(base):
        return f"{base}<{first_arg}>"
    return base


def _split(name: str) -> tuple[str, str | None]:
    """(base name, base name of the first template argument or None)."""
    if name.startswith("_Z"):
        return _mangled(name)
    base, first = _outer_name(name.strip())
    if first is not None:
        first = _RETURN_TYPE.sub("", _outer_name(first.strip())[0], count=1)
    # The return type goes after the template lists: ``std::enable_if<...>::type f`` has one.
    return _RETURN_TYPE.sub("", base, count=1), first


def _outer_name(text: str) -> tuple[str, str | None]:
    """The depth-0 text before the parameter list, template lists dropped; and the text of the
    first template argument of the last template list met (the function's own)."""
    out: list[str] = []
    first_arg: str | None = None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        # Only a scope's first character can start one: most characters skip the scan (an
        # ingest pays this once per distinct kernel name, in a process of its own).
        scope = next((s for s in _NAMED_SCOPES if text.startswith(s, i)), None) if c in _SCOPE_OPENERS else None
        if scope:
            out.append(scope)
            i += len(scope)
            continue
        if c == "(":
            break  # the parameter list
        if c == "<":
            end, arg = _template_end(text, i)
            first_arg = arg
            i = end
            continue
        out.append(c)
        i += 1
    return "".join(out).strip(), first_arg


def _template_end(text: str, start: int) -> tuple[int, str]:
    """Index after the template list opening at ``start`` and its first argument's text.  An
    unbalanced (truncated) name ends the list at the end of the text."""
    depth, i, n = 0, start, len(text)
    comma = None
    while i < n:
        c = text[i]
        if c == "<":
            depth += 1
        elif c == ">" and text[i - 1] != "-":  # ``->`` inside an argument is no bracket
            depth -= 1
            if depth == 0:
                break
        elif c in "({":
            i = _skip_group(text, i)
            continue
        elif c == "," and depth == 1 and comma is None:
            comma = i
        i += 1
    return i + 1, text[start + 1 : comma if comma is not None else i]


def _skip_group(text: str, start: int) -> int:
    """Index after the ``(...)`` or ``{...}`` group opening at ``start`` (lambdas, casts)."""
    close = {"(": ")", "{": "}"}[text[start]]
    depth, i = 0, start
    while i < len(text):
        if text[i] == text[start]:
            depth += 1
        elif text[i] == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _mangled(name: str) -> tuple[str, str | None]:
    """Base name and first template argument of an Itanium-mangled name, shallowly: the
    length-prefixed identifiers of the (nested) name, ``St`` as ``std``, ``S_`` as the first
    component; other substitutions and encodings end the name."""
    parts, i = _mangled_parts(name, 2)
    first: str | None = None
    if i < len(name) and name[i] == "I":
        arg, _ = _mangled_parts(name, i + 1, outer=parts)
        first = "::".join(arg) or None
    return "::".join(parts) or name, first


def _mangled_parts(name: str, i: int, outer: list[str] | None = None) -> tuple[list[str], int]:
    parts: list[str] = []
    if name.startswith("N", i):
        i += 1
    while i < len(name):
        if name.startswith("St", i):
            parts.append("std")
            i += 2
        elif name.startswith("S_", i) and outer:
            parts.append(outer[0])
            i += 2
        elif name[i] == "L":  # internal linkage marker
            i += 1
        elif (m := _MANGLED_ID.match(name, i)) is not None:
            length, start = int(m.group(1)), m.end()
            ident = name[start : start + length]
            parts.append("(anonymous namespace)" if ident.startswith("_GLOBAL__N") else ident)
            i = start + length
        else:
            break
    return parts, i
