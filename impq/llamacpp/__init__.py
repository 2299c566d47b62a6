"""llama.cpp's own tools, below the backend and the exporter that use them.

:mod:`impq.llamacpp.build` builds the pinned version once per machine (on first use, or
ahead with ``python -m impq.llamacpp build``); :mod:`impq.llamacpp.gguf` converts a
Hugging Face folder to GGUF, computes an importance matrix, quantizes per block, reads a
GGUF back and scores it with ``llama-perplexity``.
"""
