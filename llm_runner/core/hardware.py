"""GPU facts for /hardware/info, from NVML when a GPU is visible; never an error."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

log = logging.getLogger("llm_runner.hardware")


def gpu_info() -> dict[str, dict[str, Any]]:
    """Per-GPU id, name, memory (bytes) and compute capability, keyed by index as a string."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, no GPU, no library: the official shape with no GPUs
        return {}
    try:
        gpus: dict[str, dict[str, Any]] = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            gpus[str(index)] = {
                "id": uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                "name": name.decode() if isinstance(name, bytes) else str(name),
                "memory_total": int(memory.total),
                "memory_free": int(memory.free),
                "major": int(major),
                "minor": int(minor),
            }
        return gpus
    except Exception as exc:
        log.warning("NVML query failed: %s", exc)
        return {}
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
