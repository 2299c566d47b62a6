"""GPTQ linears on a CPU: GPTQModel's bfloat16 matmul against impq's float32 multiply.

One SmolLM2-135M MLP projection (576 -> 1536, 2 bits, groups of 64) packed into
GPTQModel's ``TorchLinear`` as :meth:`impq.backends.gptq.GptqBackend.quantize_blocks`
packs it, applied to 2,048 tokens (8 windows of 256) as it is native (bfloat16 operands)
and with impq's float32 multiply (:func:`impq.backends.gptq._float32_matmul`), which impq
uses where the CPU has no native bfloat16 matmul. Prints both times, their ratio and the
largest difference between the two outputs.

    PYTHONPATH=. python benchmarks/gptq_cpu_matmul.py
"""

from __future__ import annotations

import time
from unittest import mock

import torch
from gptqmodel import QuantizeConfig
from gptqmodel.quantization.gptq import GPTQ
from torch import nn

from impq.backends import gptq

IN, OUT, TOKENS, BITS, GROUP = 576, 1536, 2048, 2, 64


def _packed_linears() -> tuple[nn.Module, nn.Module]:
    """The same GPTQ-quantized linear packed twice: native, and with the float32 multiply."""
    torch.manual_seed(0)
    linear = nn.Linear(IN, OUT, bias=False).to(torch.bfloat16)
    task = GPTQ(linear, QuantizeConfig(bits=BITS, group_size=GROUP, desc_act=False))
    task.quantizer.configure(perchannel=True)
    x = torch.randn(TOKENS, IN, dtype=torch.bfloat16)
    task.add_batch(x, linear(x))
    q_weight, scale, zero, g_idx, *_ = task.quantize()
    packed = []
    for native in (True, False):
        with mock.patch.object(gptq, "_native_16_bit_matmul", return_value=native):
            packed.append(
                gptq.packed_linear(
                    linear, q_weight, scale, zero, g_idx, BITS, GROUP, True, torch.bfloat16
                )
            )
    return packed[0], packed[1]


def _seconds(module: nn.Module, x: torch.Tensor, repeats: int = 3) -> tuple[float, torch.Tensor]:
    with torch.no_grad():
        out = module(x)  # first call dequantizes and caches the weight
        start = time.perf_counter()
        for _ in range(repeats):
            out = module(x)
    return (time.perf_counter() - start) / repeats, out


def main() -> None:
    print(f"native bfloat16 matmul on this CPU: {gptq._native_16_bit_matmul()}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    x = torch.randn(TOKENS, IN, dtype=torch.bfloat16)
    native_linear, widened_linear = _packed_linears()
    native, out_native = _seconds(native_linear, x)
    widened, out_widened = _seconds(widened_linear, x)
    diff = (out_native.float() - out_widened.float()).abs().max().item()
    scale = out_native.float().abs().max().item()
    print(f"bfloat16 operands: {native * 1e3:9.1f} ms per call")
    print(f"float32 multiply:  {widened * 1e3:9.1f} ms per call")
    print(f"speed-up: {native / widened:.1f}x; largest output difference {diff:.3g} "
          f"(largest output {scale:.3g})")  # fmt: skip


if __name__ == "__main__":
    main()
