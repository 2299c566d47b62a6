"""Run llama.cpp's ``convert_hf_to_gguf.py`` as a script, naming a pre-tokenizer it cannot.

Usage: ``python _convert_hf.py LLAMA_CPP_SOURCE [converter arguments...]``.

The converter recognises a BPE tokenizer's pre-tokenizer by hashing the tokens of a probe
string, so every tokenizer trained for a project (the reference model's, the tiny test
models') is refused with ``NotImplementedError``, although its ``tokenizer.json`` declares
a pre-tokenizer that llama.cpp implements. Only then, and only for the exact GPT-2
byte-level pre-tokenizer (``ByteLevel`` with its regex, no prefix space, no normalizer),
this names it ``gpt-2``; anything else keeps the converter's error. Everything else is the
converter as shipped. Runs in its own process: it imports the vendored ``gguf-py``.
"""

from __future__ import annotations

import json
import logging
import runpy
import sys
from pathlib import Path
from typing import Any

_GPT2_PRE_TOKENIZER = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}


def declared_pre_tokenizer(model_dir: Path) -> str | None:
    """The llama.cpp pre-tokenizer that ``model_dir/tokenizer.json`` declares, if known."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return None
    spec = json.loads(path.read_text(encoding="utf-8"))
    pre = spec.get("pre_tokenizer") or {}
    same = all(pre.get(k) == v for k, v in _GPT2_PRE_TOKENIZER.items())
    if same and spec.get("normalizer") is None and spec.get("model", {}).get("type") == "BPE":
        return "gpt-2"
    return None


def main(argv: list[str]) -> None:
    """Run the converter of the llama.cpp source ``argv[0]`` with arguments ``argv[1:]``."""
    source = Path(argv[0])
    converter = source / "convert_hf_to_gguf.py"
    sys.path[:0] = [str(source), str(source / "gguf-py")]
    from conversion.base import TextModel

    recognise = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self: Any, tokenizer: Any) -> str:
        try:
            return str(recognise(self, tokenizer))
        except NotImplementedError:
            name = declared_pre_tokenizer(Path(self.dir_model))
            if name is None:
                raise
            logging.getLogger("impq").warning(
                "pre-tokenizer hash unknown to the converter; tokenizer.json declares the "
                "GPT-2 byte-level pre-tokenizer: writing tokenizer.ggml.pre = %r",
                name,
            )
            return name

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = [str(converter), *argv[1:]]
    runpy.run_path(str(converter), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
