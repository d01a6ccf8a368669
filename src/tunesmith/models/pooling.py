"""Mean pooling for a BERT classifier: the sentence embedding its encoder was trained for, in training and in
the saved folder.

Sentence encoders such as all-MiniLM-L6-v2 were trained on the L2-normalised mean of their token
states; their [CLS] pooler output is a much weaker embedding (Banking77, 10 per class, logistic
regression on validation: 0.83 mean-pooled vs 0.74 from the pooler). transformers' BERT classifier
reads only the pooler, so `use_mean_pooling` swaps the pooler of a live model for one that returns the
normalised mean over real tokens and marks the config (`sentence_pooling: mean`).

Saved, such a model must mean the same thing wherever it is loaded. `portable` turns it into
models/mean_bert.py's MeanPooledBertForSequenceClassification (same weights, its own model_type), and
`write_portable_files` puts that file in the folder (named by config.json's `auto_map`) next to a
sentence-transformers layout (mean pooling, normalisation, the classifier as a Dense layer with no
activation, whose output is the logits). So outside tunesmith the folder loads with
`AutoModelForSequenceClassification` / `pipeline` / `SentenceTransformer` and `trust_remote_code=True`, and
plain transformers without it refuses (unknown model_type) rather than read it with the [CLS] pooler.
tunesmith itself registers the classes in-process (`load_classifier`) and runs no remote code.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from torch import nn

from tunesmith.models import mean_bert
from tunesmith.models.mean_bert import (MODEL_TYPE, MeanPooledBertConfig, MeanPooledBertForSequenceClassification,
                                        MeanPooledBertModel, mean_pool)

POOLING_KEY = "sentence_pooling"
_MODULE = Path(mean_bert.__file__).stem  # the copied file's name in the folder, as auto_map names it
AUTO_MAP = {"AutoConfig": f"{_MODULE}.MeanPooledBertConfig", "AutoModel": f"{_MODULE}.MeanPooledBertModel",
            "AutoModelForSequenceClassification": f"{_MODULE}.MeanPooledBertForSequenceClassification"}


def use_mean_pooling(model: nn.Module) -> bool:
    """Make `model`'s classifier read the normalised mean-pooled embedding; False (model unchanged) when it is
    not a BERT classifier: a RoBERTa head reads the first token, and only BERT's mean-pooled form can be saved
    so that it loads the same everywhere (models/mean_bert.py)."""
    body = getattr(model, "base_model", None)
    if getattr(model.config, "model_type", None) not in ("bert", MODEL_TYPE) or getattr(body, "pooler", None) is None:
        return False
    mean_pool(body)
    setattr(model.config, POOLING_KEY, "mean")
    return True


def restore_pooling(model: nn.Module) -> nn.Module:
    """A model loaded from a saved folder, with the pooling its config records. Folders saved before the
    mean-pooled class existed are plain BERT folders marked `sentence_pooling: mean`."""
    if getattr(model.config, POOLING_KEY, None) == "mean":
        use_mean_pooling(model)
    return model


def register() -> None:
    """Teach this process's transformers the mean-pooled classes, so tunesmith loads its folders without
    trust_remote_code; idempotent."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    AutoConfig.register(MODEL_TYPE, MeanPooledBertConfig, exist_ok=True)
    AutoModel.register(MeanPooledBertConfig, MeanPooledBertModel, exist_ok=True)
    AutoModelForSequenceClassification.register(MeanPooledBertConfig, MeanPooledBertForSequenceClassification,
                                                exist_ok=True)


def load_classifier(folder: str | Path, **kwargs) -> nn.Module:
    """A saved sequence classifier with the pooling it was trained with (kwargs go to from_pretrained)."""
    from transformers import AutoModelForSequenceClassification

    register()
    return restore_pooling(AutoModelForSequenceClassification.from_pretrained(folder, **kwargs))


def portable(model: nn.Module) -> nn.Module:
    """The model to save: a mean-pooled BERT classifier as MeanPooledBertForSequenceClassification with the
    same weights (see the module docstring); any other model unchanged."""
    config = model.config
    if getattr(config, POOLING_KEY, None) != "mean" or isinstance(model, MeanPooledBertForSequenceClassification):
        return model
    fields = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "architectures", "auto_map")}
    out = MeanPooledBertForSequenceClassification(MeanPooledBertConfig(**fields, auto_map=AUTO_MAP))
    out.load_state_dict(model.state_dict())
    return out.to(next(model.parameters()).dtype).eval()


def write_portable_files(model: nn.Module, folder: Path, max_length: int | None) -> None:
    """Next to a saved mean-pooled classifier: its modelling file and a sentence-transformers layout whose
    `encode` returns the logits; `max_length` is the token limit it was trained with. Nothing for other models."""
    if not isinstance(model, MeanPooledBertForSequenceClassification):
        return
    folder = Path(folder)
    shutil.copyfile(mean_bert.__file__, folder / f"{_MODULE}.py")  # the very source tunesmith runs
    _write_sentence_layout(model, folder, max_length)


def _write_sentence_layout(model: MeanPooledBertForSequenceClassification, folder: Path,
                           max_length: int | None) -> None:
    # sentence-transformers' own modules write their configs and weights; modules.json and the transformer
    # module's config are written here because that module is the folder itself (its save would overwrite it)
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    hidden = model.config.hidden_size
    head = model.classifier
    modules = [("", Transformer), ("1_Pooling", Pooling(hidden, "mean")), ("2_Normalize", Normalize()),
               ("3_Dense", Dense(hidden, head.out_features, activation_function=nn.Identity(),
                                 init_weight=head.weight.detach().float().clone(),
                                 init_bias=head.bias.detach().float().clone()))]
    entries = []
    for idx, (path, module) in enumerate(modules):
        cls = module if isinstance(module, type) else type(module)
        entries.append({"idx": idx, "name": str(idx), "path": path, "type": f"{cls.__module__}.{cls.__name__}"})
        if path:
            (folder / path).mkdir()
            module.save(str(folder / path))
    (folder / "modules.json").write_text(json.dumps(entries, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": max_length, "do_lower_case": False} if max_length else {"do_lower_case": False}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "__version__": {"sentence_transformers": sentence_transformers.__version__,
                        "transformers": transformers.__version__, "pytorch": torch.__version__},
        "model_type": "SentenceTransformer"}, indent=2))
