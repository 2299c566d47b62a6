"""impq: interaction-aware mixed-precision quantization of large language models."""

__version__ = "0.1.0"
