"""Image classification with a pre-trained timm backbone: rows are (image, label) pairs.

Schedule, in the fastai tradition: with method full, the new head first trains alone for
`image.freeze_epochs` on the frozen backbone's features, computed once and cached; then every
layer trains, with learning rates decaying layer group by layer group from the head down
(`image.layer_decay`). A linear probe trains on the cached features throughout.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tunesmith.config import RunConfig, field_error
from tunesmith.data.split import check_label_sets, make_splits, sample_stratified
from tunesmith.memo import Memo, audit_key, key
from tunesmith.tasks import register_task
from tunesmith.tasks.base import Phase, Prepared, TaskData
from tunesmith.tasks.classification import Classifier

BASELINES = ("majority_class", "linear_probe")  # the text baselines (TF-IDF, zero-shot) do not apply


def _files(cfg: RunConfig) -> dict[str, str]:
    return {s: str(getattr(cfg.data, s)) for s in ("train", "validation", "test") if getattr(cfg.data, s)}


@torch.no_grad()
def backbone_features(model, encoded: dict[str, list[dict]], collate, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Pooled pre-logits features of every split, from the backbone in eval mode (as a frozen one runs)."""
    was_training = model.training
    model.eval()
    out = {}
    for split, examples in encoded.items():
        chunks = [model.forward_head(model.forward_features(collate(examples[i:i + batch_size])["pixel_values"]),
                                     pre_logits=True) for i in range(0, len(examples), batch_size)]
        out[split] = torch.cat(chunks).float()
    model.train(was_training)
    return out


def _head_logits(model, features: torch.Tensor) -> torch.Tensor:
    model = getattr(model, "module", model)  # under DistributedDataParallel
    features = F.dropout(features, p=float(getattr(model, "drop_rate", 0.0)), training=model.training)
    return model.get_classifier()(features)


@torch.no_grad()
def cache_is_faithful(model, encoded: dict[str, list[dict]], feats: dict[str, torch.Tensor], collate,
                      rows: int = 8) -> bool:
    """The head applied to cached features must give the model's own logits (eval mode) on real rows."""
    was_training = model.training
    model.eval()
    batch = collate(encoded["train"][:rows])["pixel_values"]
    ok = torch.allclose(model(batch), _head_logits(model, feats["train"][:rows]), atol=1e-4, rtol=1e-4)
    model.train(was_training)
    return ok


def freeze_body(model) -> None:
    head = {id(p) for p in model.get_classifier().parameters()}
    for param in model.parameters():
        param.requires_grad_(id(param) in head)


@register_task("image-classification")
class ImageClassification(Classifier):
    name: str
    input_name = "image"
    default_lr = {"full": 1e-3, "linear-probe": 1e-2, "lora": 1e-3}

    def configure(self, cfg: RunConfig) -> RunConfig:
        """LoRA adapts attention projections, which a CNN backbone does not have; contrastive is for text."""
        if cfg.train.method == "auto":  # auto chooses by data size for text only; full is this task's default
            cfg.train.method = "full"
        if cfg.train.method in ("lora", "contrastive"):
            raise field_error("train.method", cfg.train.method, "does not apply to task image-classification; use "
                              "full (with image.freeze_epochs) or linear-probe")
        return cfg

    # -- data ------------------------------------------------------------------------------
    def data_settings(self, cfg: RunConfig) -> dict:
        """Loading reads the image column, label names, max_side and skip_unreadable; the rest is training."""
        return cfg.image.model_dump(mode="json", exclude={"size", "freeze_epochs", "head_learning_rate",
                                                          "cache_features", "batchnorm", "layer_decay", "augment"})

    def load_data(self, cfg: RunConfig) -> TaskData:
        from tunesmith.data.images import load_source

        d = cfg.data
        frames, skipped = load_source(Path(d.train), cfg.image, d.label_column)
        for split in ("validation", "test"):
            path = getattr(d, split)
            if path is not None:
                more, more_skipped = load_source(Path(path), cfg.image, d.label_column)
                frames[split], skipped = more["train"], skipped + more_skipped
        if d.max_train_rows:
            frames["train"] = sample_stratified(frames["train"], d.max_train_rows, cfg.train.seed)
        splits = make_splits(frames["train"], frames.get("validation"), frames.get("test"), d.validation_size,
                             d.test_size, cfg.train.seed, str(d.train))
        labels = check_label_sets(splits, _files(cfg))
        return TaskData(splits=splits, labels=labels, data_report={"files": _files(cfg), "unreadable": skipped})

    def audit(self, cfg: RunConfig, data: TaskData) -> tuple[TaskData, dict]:
        from tunesmith.data.clean import apply_fixes
        from tunesmith.data.image_audit import audit_image_splits

        report = audit_image_splits(data.splits, cfg.audit, data.data_report.get("unreadable", []))
        no_text_fixes = cfg.audit.model_copy(update={"mask_pii": False})  # a reference is not text to mask
        splits, report["fixes"] = apply_fixes(dict(data.splits), report, no_text_fixes, cfg.train.seed)
        labels = check_label_sets(splits, _files(cfg))
        return TaskData(splits=splits, labels=labels, data_report=data.data_report), report

    def profile(self, data: TaskData) -> dict:
        train = data.splits["train"]
        shapes = np.array([a.shape for a in train["image"]])
        return {"label_counts": {str(k): int(v) for k, v in train["label"].value_counts().items()},
                "median_height": float(np.median(shapes[:, 0])), "median_width": float(np.median(shapes[:, 1])),
                "grey_share": round(float(np.mean(shapes[:, 2] == 1)), 4)}

    # -- model -----------------------------------------------------------------------------
    def prepare(self, cfg: RunConfig, data: TaskData, memo: Memo | None = None) -> Prepared:
        from tunesmith.data.transforms import ImageCollate, collate_features
        from tunesmith.models.vision import create_backbone, preprocess_of

        memo = memo or Memo(enabled=False)
        labels = data.labels
        model, source = create_backbone(cfg.model.name, cfg.model.weights, len(labels), cfg.model.dropout,
                                        cfg.model.revision)
        if cfg.image.batchnorm == "frozen":
            from timm.layers import freeze_batch_norm_2d

            model = freeze_batch_norm_2d(model)  # same names and values; statistics and affine stay fixed
        pre = preprocess_of(model, cfg.image.size)
        index = {l: i for i, l in enumerate(labels)}
        encoded = {split: [{"image": img, "labels": index[lab], "index": i}
                           for i, (img, lab) in enumerate(zip(df["image"], df["label"]))]
                   for split, df in data.splits.items()}
        train_collate = ImageCollate(pre, cfg.image.augment, len(labels), cfg.train.seed)
        eval_collate = ImageCollate(pre, None, len(labels))
        method = "full" if cfg.train.method == "auto" else cfg.train.method  # configure() resolves it too
        warmup_wanted = method == "full" and cfg.image.freeze_epochs > 0
        feats, cached, faithful, feature_seconds = None, None, False, 0.0
        if method == "linear-probe" or warmup_wanted or "linear_probe" in cfg.eval.baselines:
            feats_key = key(audit_key(cfg, self),
                            cfg.image.model_dump(mode="json", exclude={"augment", "freeze_epochs", "cache_features",
                                                                       "head_learning_rate", "layer_decay"}),
                            source, cfg.model.name, cfg.model.revision)
            tic = time.perf_counter()
            feats = memo.get("features", feats_key, lambda: backbone_features(model, encoded, eval_collate))
            feature_seconds = round(time.perf_counter() - tic, 2)
            faithful = cfg.image.cache_features and cache_is_faithful(model, encoded, feats, eval_collate)
            cached = {split: [{"features": f, "labels": ex["labels"]} for f, ex in zip(feats[split], encoded[split])]
                      for split in encoded}
        warmup, groups = None, None
        main_encoded, main_collate, main_eval = encoded, train_collate, eval_collate
        if method == "linear-probe":
            freeze_body(model)
            if faithful:  # the frozen body never changes: train on its cached features
                main_encoded, main_collate, main_eval = cached, collate_features, None
        elif warmup_wanted:
            warmup = Phase("head", cfg.image.freeze_epochs, cfg.image.head_learning_rate,
                           cached if faithful else encoded, collate_features if faithful else train_collate,
                           enter=freeze_body, eval_collate=None if faithful else eval_collate)
            groups = self._layer_groups(cfg)
        elif method == "full":
            groups = self._layer_groups(cfg)
        model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, pre.size, pre.size),
                                "mean": pre.mean, "std": pre.std, "crop_pct": 1.0}
        return Prepared(model=model, encoded=main_encoded, lengths=[1] * len(main_encoded["train"]),
                        collate=main_collate, eval_collate=main_eval, preprocessor=pre, warmup=warmup,
                        param_groups=groups, loss=self.class_loss(cfg, data), frozen_features=feats,
                        resolved={"model_source": source, "model_kind": "timm", "max_length": None,
                                  "image_size": pre.size, "mean": list(pre.mean), "std": list(pre.std),
                                  "feature_cache": bool(faithful), "feature_seconds": feature_seconds,
                                  "labels": labels,
                                  "architecture": model.pretrained_cfg.get("architecture")})

    @staticmethod
    def _layer_groups(cfg: RunConfig):
        """Discriminative learning rates: timm's layer groups, each `layer_decay` times the rate of the one above."""
        def groups(model, lr: float) -> list[dict]:
            from timm.optim import param_groups_layer_decay

            out = param_groups_layer_decay(model, weight_decay=cfg.train.weight_decay,
                                           layer_decay=cfg.image.layer_decay)
            for g in out:
                g["lr"] = lr * g.pop("lr_scale", 1.0)
            return out

        return groups

    # -- objective and metrics -------------------------------------------------------------
    def logits(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "features" in batch:
            return _head_logits(model, batch["features"])
        return model(batch["pixel_values"])

    def baselines(self, cfg: RunConfig, data: TaskData, prepared: Prepared) -> dict[str, np.ndarray]:
        """Majority class, and logistic regression on the frozen pre-trained backbone's features
        (C chosen on the validation split)."""
        from tunesmith.evaluate import baselines as B

        index = {l: i for i, l in enumerate(data.labels)}
        y = {s: data.splits[s]["label"].map(index).to_numpy() for s in ("train", "validation")}
        out: dict[str, np.ndarray] = {}
        if "majority_class" in cfg.eval.baselines:
            out["majority_class"] = B.majority_class(y["train"], len(data.splits["test"]), len(data.labels))
        if "linear_probe" in cfg.eval.baselines and prepared.frozen_features is not None:
            f = {s: prepared.frozen_features[s].numpy() for s in ("train", "validation", "test")}
            out["linear_probe"], _ = B.tuned_linear_probe(f["train"], y["train"], f["validation"], y["validation"],
                                                          f["test"], len(data.labels))
        return out

    def illustrate(self, data: TaskData, logits, y, run_dir: Path) -> None:
        from tunesmith.evaluate.images import misclassified_grid

        misclassified_grid(data.splits["test"], logits, y, data.labels, run_dir / "misclassified.png")

    def save(self, model: torch.nn.Module, prepared: Prepared, folder: Path) -> None:
        from tunesmith.models.vision import save_backbone

        save_backbone(model, prepared.resolved["labels"], folder, {"tunesmith_task": "image-classification"})
