"""Built-in hardware catalogue: vendor-published dense peaks, so rooflines can be drawn.

Figures are per device as the runtime sees it (an MI250 shows up as one of its two GCDs).
FLOP/s are dense (no structured sparsity); tensor-core figures where the dtype uses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tracehouse.core.frames import DeviceInfo

T = 1e12
GB = 1e9


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    key: str
    name: str
    vendor: str
    pattern: str  # case-insensitive, matched against the device name
    sm_count: int | None
    memory_bytes: int | None
    compute_capability: str | None
    fp64: float | None
    fp32: float | None
    tf32: float | None
    fp16: float | None
    bf16: float | None
    int8: float | None
    bandwidth: float | None  # bytes/s
    min_memory_bytes: int | None = None  # to tell 40 GB from 80 GB cards with one name


CATALOG: tuple[HardwareSpec, ...] = (
    HardwareSpec(
        "h200",
        "NVIDIA H200",
        "nvidia",
        r"H200",
        132,
        141 * 2**30,
        "9.0",
        34 * T,
        67 * T,
        494.7 * T,
        989.4 * T,
        989.4 * T,
        1978.9 * T,
        4800 * GB,
    ),
    HardwareSpec(
        "h100-sxm",
        "NVIDIA H100 SXM 80GB",
        "nvidia",
        r"H100",
        132,
        80 * 2**30,
        "9.0",
        34 * T,
        67 * T,
        494.7 * T,
        989.4 * T,
        989.4 * T,
        1978.9 * T,
        3350 * GB,
    ),
    HardwareSpec(
        "a100-80gb",
        "NVIDIA A100 80GB",
        "nvidia",
        r"A100",
        108,
        80 * 2**30,
        "8.0",
        9.7 * T,
        19.5 * T,
        156 * T,
        312 * T,
        312 * T,
        624 * T,
        2039 * GB,
        min_memory_bytes=60 * 2**30,
    ),
    HardwareSpec(
        "a100-40gb",
        "NVIDIA A100 40GB",
        "nvidia",
        r"A100",
        108,
        40 * 2**30,
        "8.0",
        9.7 * T,
        19.5 * T,
        156 * T,
        312 * T,
        312 * T,
        624 * T,
        1555 * GB,
    ),
    HardwareSpec(
        "v100",
        "NVIDIA V100",
        "nvidia",
        r"V100",
        80,
        32 * 2**30,
        "7.0",
        7.8 * T,
        15.7 * T,
        None,
        125 * T,
        None,
        None,
        900 * GB,
    ),
    HardwareSpec(
        "rtx4090",
        "NVIDIA GeForce RTX 4090",
        "nvidia",
        r"RTX 4090",
        128,
        24 * 2**30,
        "8.9",
        1.3 * T,
        82.6 * T,
        82.6 * T,
        165.2 * T,
        165.2 * T,
        660.6 * T,
        1008 * GB,
    ),
    HardwareSpec(
        "rtx4060ti",
        "NVIDIA GeForce RTX 4060 Ti",
        "nvidia",
        r"RTX 4060 Ti",
        34,
        8 * 2**30,
        "8.9",
        0.34 * T,
        22.1 * T,
        22.1 * T,
        44.1 * T,
        44.1 * T,
        176.6 * T,
        288 * GB,
    ),
    HardwareSpec(
        "rtx3090",
        "NVIDIA GeForce RTX 3090",
        "nvidia",
        r"RTX 3090",
        82,
        24 * 2**30,
        "8.6",
        0.56 * T,
        35.6 * T,
        35.6 * T,
        71 * T,
        71 * T,
        284 * T,
        936 * GB,
    ),
    HardwareSpec(
        "rtx3060",
        "NVIDIA GeForce RTX 3060",
        "nvidia",
        r"RTX 3060",
        28,
        12 * 2**30,
        "8.6",
        0.2 * T,
        12.7 * T,
        12.7 * T,
        25.4 * T,
        25.4 * T,
        101.6 * T,
        360 * GB,
    ),
    # ROCm names an MI250 GCD "AMD Radeon Graphics" / "AMD Instinct MI250X"; 104 CUs, 64 GB.
    HardwareSpec(
        "mi250-gcd",
        "AMD Instinct MI250 (one GCD)",
        "amd",
        r"MI250|AMD Radeon Graphics",
        104,
        64 * 2**30,
        "9.0",
        45.3 * T,
        45.3 * T,
        None,
        181 * T,
        181 * T,
        181 * T,
        1638 * GB,
    ),
    HardwareSpec("cpu", "CPU", "cpu", r"^cpu$", None, None, None, None, None, None, None, None, None, None),
)

_BY_KEY = {spec.key: spec for spec in CATALOG}

# FLOPs per warp-level tensor-core (HMMA) instruction, by compute capability: the factor
# NERSC's counter roofline multiplies ``sm__inst_executed_pipe_tensor*.sum`` by.  It is the
# instruction's m·n·k FMAs × 2 for the fp16 shape each architecture's GEMMs use: Volta
# HMMA.884 = 512, Turing HMMA.1688 = 2048, Ampere / Ada HMMA.16816 = 4096.  Other shapes
# (TF32's HMMA.1684, int8 IMMA) are counted at this factor too, which over-counts them; Hopper's
# warpgroup GMMA has no fixed per-instruction figure, so it (and unknown parts) get none.
TENSOR_FLOPS_PER_INST: dict[str, int] = {
    "7.0": 512,
    "7.2": 512,
    "7.5": 2048,
    "8.0": 4096,
    "8.6": 4096,
    "8.7": 4096,
    "8.9": 4096,
}


def tensor_flops_per_inst(compute_capability: str | None) -> int | None:
    """FLOPs per tensor-core instruction for a compute capability; None when unknown."""
    return TENSOR_FLOPS_PER_INST.get((compute_capability or "").strip())


def lookup(name: str, memory_bytes: int | None = None) -> HardwareSpec | None:
    """The catalogue entry for a device name (and memory, where one name covers two sizes)."""
    key = name.strip().lower()
    if key in _BY_KEY:
        return _BY_KEY[key]
    for spec in CATALOG:
        if not re.search(spec.pattern, name, re.IGNORECASE):
            continue
        if (
            spec.min_memory_bytes
            and (memory_bytes is None or memory_bytes < spec.min_memory_bytes)
            and "80GB" not in name.upper()
        ):
            continue
        return spec
    return None


def device_row(device: DeviceInfo | None, override_name: str | None, cpu_only: bool) -> dict[str, object]:
    """Column values for the ``hardware`` table from what the trace (or the user) says."""
    if override_name:
        spec = lookup(override_name)
        name = override_name
        base: dict[str, object] = {}
    elif device is not None and device.name:
        spec = lookup(device.name, device.memory_bytes)
        name = device.name
        base = {
            "sm_count": device.sm_count,
            "memory_bytes": device.memory_bytes,
            "compute_capability": device.compute_capability,
            "vendor": device.vendor,
        }
    else:
        spec = lookup("cpu") if cpu_only else None
        name = "cpu" if cpu_only else "unknown"
        base = {}
    row: dict[str, object] = {"name": name, "catalog_key": spec.key if spec else None}
    if spec is not None:
        row.update(
            vendor=spec.vendor,
            sm_count=spec.sm_count,
            memory_bytes=spec.memory_bytes,
            compute_capability=spec.compute_capability,
            peak_fp64_flops=spec.fp64,
            peak_fp32_flops=spec.fp32,
            peak_tf32_flops=spec.tf32,
            peak_fp16_flops=spec.fp16,
            peak_bf16_flops=spec.bf16,
            peak_int8_ops=spec.int8,
            peak_bandwidth_bytes_s=spec.bandwidth,
        )
    # What the trace measured beats the catalogue's nominal figures.
    row.update({k: v for k, v in base.items() if v is not None})
    return row
