"""Exporters: the chosen mixed-precision model in the format a runtime loads, checked.

``impq.export.get_exporter(name)`` (``export.backend``: quanto, hqq, gptq, llamacpp)
writes the model an assignment describes, reads back what its files store and reloads
them through the runtime's own library; :func:`check_stored` compares the files with the
assignment. GGUF files for llama.cpp come from :mod:`impq.llamacpp.gguf` (llama.cpp's own
tools) and are also scored by llama.cpp (:class:`RuntimeChecked`).
"""

from impq.export.base import (
    EXPORTERS,
    ExportCheckError,
    Exporter,
    RuntimeChecked,
    StoredLinear,
    check_stored,
    get_exporter,
)

__all__ = [
    "EXPORTERS",
    "ExportCheckError",
    "Exporter",
    "RuntimeChecked",
    "StoredLinear",
    "check_stored",
    "get_exporter",
]
