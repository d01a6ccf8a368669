"""ONNX Runtime's transformer fusion for BERT-family encoders (what Optimum does before quantizing).

`onnxruntime.transformers.optimizer.optimize_model(model_type="bert")` rewrites the attention
subgraph into one `Attention` op, LayerNorm after a residual into `SkipLayerNormalization`, the
FFN's bias + GELU into `BiasGelu` and the embeddings into `EmbedLayerNormalization` (ORT-only
contrib ops: the runtime is ORT anyway). Its patterns match the TorchScript exporter's graph: on
the dynamo exporter's graph of a MiniLM only SkipLayerNormalization and BiasGelu fused (no
Attention), so the fused graph is built from a TorchScript export. The fused graph must reproduce
the PyTorch logits on the probe batch like any other; when anything fails the plain graph is kept
and the reason recorded.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from tunesmith.models.mean_bert import MODEL_TYPE  # BERT with mean pooling

# transformers model_type -> ORT optimizer model_type (the encoders whose graph ORT's "bert" fusions match)
FUSABLE = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", MODEL_TYPE: "bert"}
FUSED_OPS = ("Attention", "SkipLayerNormalization", "BiasGelu", "Gelu", "EmbedLayerNormalization")


def fused_counts(path: Path) -> dict[str, int]:
    """How many of each fused op the graph at `path` holds (zeros included)."""
    import onnx

    ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    return {op: ops.count(op) for op in FUSED_OPS}


def fuse(model, args: tuple, names: list[str], dynamic: dict, config, path: Path, expected: np.ndarray,
         probe: dict[str, np.ndarray], tolerance: float, opset: int) -> dict:
    """Write the fused graph of `model` to `path` if it reproduces `expected` on the probe; a record either way
    ({"applied": bool, "why": str, "ops": {...}}). `path` is left untouched when fusion is not applied."""
    model_type = getattr(config, "model_type", None)
    if model_type not in FUSABLE:
        return {"applied": False, "why": f"no ORT fusion for model_type {model_type!r} "
                                         f"(fused: {', '.join(sorted(FUSABLE))})"}
    raw, fused = path.with_name(path.stem + ".ts.onnx"), path.with_name(path.stem + ".fused.onnx")
    try:
        import torch
        from onnxruntime.transformers.optimizer import optimize_model

        from tunesmith.export.graph import probe_diff

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, str(raw), input_names=names, output_names=["logits"],
                              dynamic_axes={**dynamic, "logits": {0: "batch"}}, opset_version=opset, dynamo=False)
        # opt_level=0: the Python fusions only, no machine-specific ORT rewrites baked into the file
        optimize_model(str(raw), model_type=FUSABLE[model_type], num_heads=int(config.num_attention_heads),
                       hidden_size=int(config.hidden_size), opt_level=0, use_gpu=False).save_model_to_file(str(fused))
        ops = fused_counts(fused)
        if ops["Attention"] == 0:
            return {"applied": False, "ops": ops, "why": "ORT's optimizer fused no Attention; kept the plain graph"}
        diff = probe_diff(fused, probe, expected)
        if diff > tolerance:
            return {"applied": False, "ops": ops, "why": f"the fused graph differed from PyTorch by {diff:.3g} on "
                                                         "a probe batch; kept the plain graph"}
        fused.replace(path)
        return {"applied": True, "ops": ops, "probe_max_abs_diff": diff,
                "why": f"ORT transformer fusion (model_type {FUSABLE[model_type]!r}, {config.num_attention_heads} "
                       f"heads, hidden size {config.hidden_size}) of the TorchScript exporter's graph"}
    except Exception as err:  # the optimizer or the TorchScript exporter raised: the plain graph stands
        return {"applied": False, "why": f"fusion failed ({type(err).__name__}: "
                                         f"{str(err).splitlines()[0][:200] if str(err) else ''}); kept the plain graph"}
    finally:
        for leftover in (raw, fused):
            leftover.unlink(missing_ok=True)
