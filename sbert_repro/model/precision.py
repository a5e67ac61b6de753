"""The number format a model encodes or scores in: fp32 as it is, bf16 or fp16 in autocast over its own fp32
weights, int8 through dynamic quantization of its Linear layers."""

from __future__ import annotations

import copy
from collections.abc import MutableMapping
from typing import Any, TypeVar

import torch

Model = TypeVar("Model", bound=torch.nn.Module)
HALF_PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}


class AutocastForward:
    """A model's forward in torch.autocast at `dtype`, its floating outputs handed on in fp32. Autocast computes
    the matrix products in half precision and keeps what overflows or loses most there in fp32 (softmax, and on
    GPUs LayerNorm), where casting the weights would run everything in half precision; the embeddings are then
    normalised and stored in fp32. A class, not a closure: a model sent to encoding processes is pickled."""

    def __init__(self, forward: Any, device_type: str, dtype: torch.dtype) -> None:
        self.forward, self.device_type, self.dtype = forward, device_type, dtype

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(self.device_type, dtype=self.dtype):
            output = self.forward(*args, **kwargs)
        if isinstance(output, MutableMapping):  # the features (a BatchEncoding), kept of their own type
            for key in list(output):
                output[key] = _fp32(output[key])
            return output
        return _fp32(output)


def _fp32(value: Any) -> Any:
    return value.float() if torch.is_tensor(value) and value.is_floating_point() else value


def for_inference(model: Model, precision: str) -> Model:
    """The model (a bi-encoder or a cross-encoder) to encode or score with at a resolved `precision`: the model
    itself (fp32); for bf16 or fp16, the same model (its fp32 weights shared, not copied) whose forward runs in
    autocast; for int8, a copy with int8 Linear layers (weights quantized once, activations per batch). The model's
    own weights, which training updates and save() writes, stay as they are."""
    if precision == "fp32":
        return model
    if precision in HALF_PRECISIONS:
        # The copy shares the model's modules: what is set on them (max_seq_length, .to(), a pool's move to the CPU)
        # is set on the model too. Its prompts are its own.
        encoder = copy.copy(model)
        if isinstance(getattr(model, "prompts", None), dict):
            encoder.prompts = dict(model.prompts)
        encoder.forward = AutocastForward(model.forward, model.device.type, HALF_PRECISIONS[precision])
        return encoder
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8,
                                                  inplace=True)
