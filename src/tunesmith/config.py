"""Typed run configuration: YAML plus `key.sub=value` overrides, checked before any compute.

Field descriptions are the documentation: `tunesmith train --help` prints them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunesmith.errors import UserError


class FieldError(ValueError):
    """Raised by a model-level check: names the field (dotted, relative to the model checked) and the
    value at fault, so the error reads `field = value: reason` and not the whole section."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.field, self.value, self.reason = field, value, reason


PLAIN_NAME = "expected a plain folder name (no /, \\, .. or absolute path; not empty), e.g. my-run"


def is_plain_name(value: str) -> bool:
    """A run or study name becomes a folder inside output_dir: nothing that would leave it."""
    return bool(value) and value not in (".", "..") and not any(c in value for c in "/\\\0") \
        and not Path(value).is_absolute()


def plain_name(value: str, field: str) -> str:
    """VALUE if it is a plain folder name, else a UserError naming FIELD."""
    if not is_plain_name(value):
        raise UserError(f"{field} = {value!r}: {PLAIN_NAME}")
    return value


def _plain_or_none(value: str | None) -> str | None:
    if value is not None and not is_plain_name(value):
        raise ValueError(PLAIN_NAME)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    name: str = Field("minilm-l6", description="Pre-trained model: a registry name (`tunesmith models`), "
                      "a local folder, or a hub id.")
    max_length: int | Literal["auto"] | None = Field(None, description="Token limit per text (per window when "
                                                     "long texts are windowed), 8 to 8192. auto (the default): the "
                                                     "95th percentile of training text lengths, rounded up to a "
                                                     "multiple of 8, at most 256 when long texts are windowed (the "
                                                     "windows read the rest), else at most the model's limit.")
    long_text: Literal["windows", "truncate"] = Field("windows", description="Texts longer than max_length: "
                                                      "windows reads them as overlapping windows of max_length "
                                                      "tokens whose logits are averaged (in training, predict, "
                                                      "eval, export and serve); truncate keeps the first "
                                                      "max_length tokens. Runs with a contrastive stage truncate "
                                                      "(the head alone, train.contrastive.epochs 0, windows).")
    window_overlap: int | None = Field(None, ge=0, description="Tokens each window shares with the one before. "
                                       "Default: an eighth of max_length.")
    max_windows: int = Field(8, ge=1, le=64, description="Windows read per text, from its start (longer texts "
                             "are cut after them; counted in the audit).")
    dropout: float | None = Field(None, ge=0.0, lt=1.0, description="Dropout in the encoder and the "
                                  "classification head. Default: the model's own.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for hub ids.")
    trust_remote_code: bool = Field(False, description="Run model code shipped with a hub model. Off unless "
                                    "you trust its author.")
    weights: Path | None = Field(None, description="Image models: a local weights file (safetensors, or a "
                                 "PyTorch state_dict read with weights_only) for the timm architecture in model.name.")

    @field_validator("max_length")
    @classmethod
    def _length(cls, v):
        if v == "auto":
            return None
        if v is not None and not 8 <= v <= 8192:
            raise ValueError(f"expected auto or a token count from 8 to 8192, got {v}")
        return v


class DataConfig(_Strict):
    train: Path | None = Field(None, description="Training file: CSV, TSV, JSONL or Parquet. Images: also a "
                               "folder of class sub-folders (or train/val/test folders) or a NumPy .npz. Required.")
    validation: Path | None = Field(None, description="Validation file. Default: a seeded stratified split "
                                    "of the training file.")
    test: Path | None = Field(None, description="Test file. Default: a seeded stratified split of the "
                              "training file.")
    text_column: str = Field("text", description="Column holding the input text.")
    label_column: str = Field("label", description="Column holding the class label.")
    validation_size: float = Field(0.1, gt=0.0, lt=0.5, description="Share of rows split off for "
                                   "validation when no validation file is given.")
    test_size: float = Field(0.1, gt=0.0, lt=0.5, description="Share of rows split off for test when no "
                             "test file is given.")
    drop_missing: bool = Field(False, description="Drop rows with missing text or label (counted in the "
                               "run folder) instead of stopping with an error.")
    max_train_rows: int | None = Field(None, gt=0, description="Train on a seeded stratified sample of at "
                                       "most this many rows (quick experiments).")
    time_column: str | None = Field(None, description="Tabular: split in time order by this column (validation and "
                                    "test come after training); it is not a model feature.")
    group_column: str | None = Field(None, description="Tabular: keep all rows of one group (e.g. a customer id) in "
                                     "one split; it is not a model feature.")


class LoraSettings(_Strict):
    rank: int = Field(8, gt=0, description="LoRA rank r.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling alpha.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | None = Field(None, description="Module names to adapt. Default: the "
                                             "attention projections of the architecture.")


Method = Literal["auto", "full", "lora", "linear-probe", "contrastive"]


class ContrastiveSettings(_Strict):
    epochs: int = Field(1, ge=0, description="Passes over the label-built pairs in the contrastive stage. 0: no "
                        "stage, only the logistic-regression head on the pre-trained encoder (what "
                        "train.method auto runs on small data).")
    pairs_per_example: int | None = Field(None, gt=0, description="Positive pairs drawn for each training "
                                          "example (a partner of the same class, seeded); each anchor is also "
                                          "scored against another row's partner (a negative unless same class). "
                                          "Default: 2, or more on small data so that the stage sees at least "
                                          "2,500 pair rows.")
    # SetFit's default body rate; at 5e-5 the stage made Banking77 10-shot validation worse (bench/RESULTS.md)
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate of the contrastive stage "
                                 "(the head stage after it uses train.learning_rate).")
    # Design check on rows of each training file outside the sample (never a test file): bench/RESULTS.md,
    # "Small data, third pass"
    refit_head: bool = Field(True, description="After the encoder is chosen on validation, fit the final "
                             "logistic-regression head on the training and validation rows together (as "
                             "AutoGluon's refit_full and scikit-learn's refit=True do): with 10 examples per class "
                             "every row counts. The head stage is then skipped, validation scores in the report "
                             "are marked as not held out, and no temperature is fitted (no held-out rows are "
                             "left for it). false: the head is fitted on the training rows, then trained further "
                             "in the head stage, and validation stays held out.")
    label_rows: bool = Field(True, description="Add one row per class to the head's training rows: its label "
                             "phrase (eval.label_descriptions, else the label name in words), as SetFit's "
                             "templated data does.")


class TrainConfig(_Strict):
    method: Method = Field("auto", description="auto: pick one of the methods below from the data size "
                           "(per class) and say why in results.json (up to 50 per class: contrastive with "
                           "train.contrastive.epochs 0, the head alone; above: full); full: update every weight; lora: "
                           "low-rank adapters through PEFT; linear-probe: frozen encoder, train the head "
                           "only; contrastive (text classification): first tune the encoder on pairs built "
                           "from the labels (SetFit-style), then train the head on the tuned, frozen encoder.")
    epochs: int | None = Field(None, gt=0, description="Passes over the training data. Default: 5 below "
                               "1,000 rows, 3 below 10,000, else 2 (text classification, full fine-tuning: "
                               "5 below 1,000, 4 below 20,000, else 2).")
    batch_size: int = Field(16, gt=0, description="Examples per optimizer step, per process, before "
                            "gradient accumulation (text classification, full fine-tuning: 32 unless set).")
    batch_tokens: int | None = Field(None, gt=0, description="Token-budget batches: instead of batch_size rows, "
                                     "as many rows of similar length as fit in this many padded tokens (rows x "
                                     "longest), so short texts share a step with many others. Default: off.")
    eval_batch_size: int = Field(64, gt=0, description="Examples per forward pass when evaluating.")
    learning_rate: float | None = Field(None, gt=0, description="Peak learning rate. Default by method: "
                                        "full 1e-4 (text classification 4e-4, with train.layer_decay 0.8), lora 1e-3, "
                                        "linear-probe 1e-2, "
                                        "contrastive (its head stage) 1e-4.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not applied to biases and "
                                "LayerNorm weights).")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Label smoothing of the "
                                   "cross-entropy loss.")
    layer_decay: float = Field(1.0, gt=0.0, le=1.0, description="Text models, full fine-tuning: layer-wise "
                               "learning-rate decay; the head trains at the peak rate and each encoder layer below "
                               "at this factor of the one above (embeddings last). 1 = one rate for all. Default: 1 "
                               "(text classification, full fine-tuning: 0.8).")
    class_weights: Literal["none", "balanced"] = Field("none", description="balanced: weight the loss by "
                                                       "inverse class frequency.")
    scheduler: Literal["linear", "cosine", "constant"] = Field("linear", description="Learning-rate decay "
                                                               "after warm-up.")
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0, description="Share of optimizer steps spent warming "
                                "up the learning rate.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Batches summed per optimizer step.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the gradient norm to this value; "
                                        "null disables clipping.")
    eval_every_steps: int | None = Field(None, gt=0, description="Evaluate on validation every N optimizer "
                                         "steps. Default: at the end of each epoch.")
    early_stopping_patience: int | None = Field(None, gt=0, description="Stop after this many evaluations "
                                                "without improvement and restore the best checkpoint.")
    metric_for_best: Literal["accuracy", "macro_f1", "loss"] = Field("macro_f1", description="Validation "
                                                                     "metric that picks the best checkpoint "
                                                                     "(task sft: loss).")
    checkpoint_every_steps: int = Field(200, gt=0, description="Write a resumable checkpoint every N "
                                        "optimizer steps (and at every evaluation).")
    logging_steps: int = Field(10, gt=0, description="Log the training loss every N optimizer steps.")
    group_by_length: bool = Field(True, description="Batch texts of similar length together so short "
                                  "texts do not pay for long ones.")
    seed: int = Field(42, description="Seed for splits, initialisation, shuffling and dropout.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="Arithmetic of the forward "
                                                              "and backward passes (weights and optimizer stay "
                                                              "fp32): bf16 autocast on CPU or GPU; fp16 (with loss "
                                                              "scaling) needs a CUDA GPU; auto: bf16 for text "
                                                              "classification of 2,000 training rows or more where "
                                                              "the hardware multiplies bf16 natively (AVX512-BF16/AMX "
                                                              "CPUs, bf16 GPUs), else fp32.")
    freeze_embeddings: bool = Field(True, description="Text models, full fine-tuning: keep the word-embedding "
                                    "matrix frozen: it is half of a small encoder's weights and of the optimizer's "
                                    "work (bench/RESULTS.md, issue 13).")
    freeze_layers: int | None = Field(None, ge=0, description="Text models, full fine-tuning: also freeze all "
                                      "the embeddings (word, position, token type, their norm) and this many "
                                      "encoder layers from the bottom, so the backward pass stops above them "
                                      "(fewer layers' gradients and optimizer work). Needs train.freeze_embeddings "
                                      "true; fewer than the model's layers. Default: min(3, half the encoder's "
                                      "layers) with freeze_embeddings, else 0 (bench/ablate_textcls.py: level "
                                      "validation accuracy on Banking77 and BBC News, half the step time).")
    cache_frozen_layers: bool | None = Field(None, description="With train.freeze_layers: run the frozen bottom "
                                             "once, without dropout, and train the layers above on its stored "
                                             "outputs (fp32, length x hidden per text), so no epoch recomputes "
                                             "it. Default: on whenever layers are frozen.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA settings (method: lora).")
    contrastive: ContrastiveSettings = Field(default_factory=ContrastiveSettings,
                                             description="Contrastive stage settings (method: contrastive).")

    @model_validator(mode="after")
    def _frozen_bottom(self) -> "TrainConfig":
        if self.freeze_layers and not self.freeze_embeddings:
            raise FieldError("freeze_layers", self.freeze_layers, "freezes the embeddings below the frozen layers, "
                             "but train.freeze_embeddings is false; set it true or freeze_layers to 0")
        if self.cache_frozen_layers and (self.freeze_layers == 0 or not self.freeze_embeddings):
            raise FieldError("cache_frozen_layers", True, "caches the layers train.freeze_layers freezes, and it is "
                             "0; set train.freeze_layers above 0 or cache_frozen_layers false")
        return self


class AuditConfig(_Strict):
    enabled: bool = Field(True, description="Audit the data before training (written to audit.json).")
    on_issue: Literal["fail", "warn", "fix"] = Field("fail", description="On blocking issues (leakage, "
                                                     "conflicting duplicates, unseen labels): fail stops the run, "
                                                     "warn trains anyway, fix removes the offending rows first.")
    near_duplicate_threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard similarity of character "
                                            "5-gram sets above which two texts count as near-duplicates.")
    label_errors: bool = Field(True, description="Look for likely label errors (out-of-fold TF-IDF + logistic "
                                                 "regression probabilities fed to cleanlab).")
    drop_duplicates: bool = Field(False, description="Drop exact duplicates within each split (keep the first).")
    drop_conflicting: bool = Field(False, description="Drop every copy of a text that carries different labels "
                                   "(also done by on_issue=fix).")
    remove_leaks: bool = Field(False, description="Remove validation/test rows that duplicate or nearly "
                               "duplicate training rows (also done by on_issue=fix).")
    mask_pii: bool = Field(False, description="Replace e-mail addresses, phone and card numbers with "
                           "[EMAIL], [PHONE], [CARD] before training.")
    image_hash_distance: int = Field(6, ge=0, le=32, description="Images: Hamming distance between 64-bit "
                                     "perceptual hashes (pHash) at or below which two images are near-duplicate "
                                     "candidates.")
    image_pixel_tolerance: float = Field(0.03, ge=0.0, le=1.0, description="Images: a candidate pair counts as "
                                         "near-duplicate when the mean absolute difference of their 32x32 grey "
                                         "thumbnails (pixels 0..1) is at most this.")
    balance: Literal["none", "reweight", "oversample"] = Field("none", description="Rare classes: reweight "
                                                               "the loss, or oversample training rows.")


class EvalConfig(_Strict):
    baselines: list[Literal["majority_class", "tfidf_logreg", "linear_probe", "zero_shot"]] = Field(
        default_factory=lambda: ["majority_class", "tfidf_logreg", "linear_probe", "zero_shot"],
        description="Baselines scored on the same test split: majority_class, tfidf_logreg (TF-IDF + logistic "
                    "regression), linear_probe (logistic regression on frozen pre-trained embeddings), zero_shot "
                    "(embedding similarity to the label names).")
    probe_max_rows: int = Field(3000, gt=0, description="Training rows embedded for the linear-probe baseline "
                                "(a seeded stratified sample above this).")
    label_descriptions: dict[str, str] | None = Field(None, description="Text per label for zero-shot, e.g. "
                                                      "{card_arrival: 'my card has not arrived'}. Default: the "
                                                      "label name.")
    bootstrap_resamples: int = Field(1000, ge=100, description="Bootstrap resamples for intervals and paired tests.")
    confidence_level: float = Field(0.95, gt=0.5, lt=1.0, description="Level of the bootstrap intervals.")
    calibrate: bool = Field(True, description="Fit a temperature on validation; `predict` then uses it "
                            "(probabilities change, the predicted label does not).")
    test: bool = Field(True, description="Score the test split and the baselines. Search trials set this to "
                       "false: the test split is used once, by the study's final run.")
    costs: dict[Literal["fn", "fp"], float] | None = Field(None, description="Tabular binary: cost of a missed "
                                                           "positive (fn) and of a false alarm (fp), e.g. {fn: 5, "
                                                           "fp: 1}. The decision threshold minimising the cost on "
                                                           "validation is saved and used by `predict`; the report "
                                                           "gives the expected cost on test. Default: threshold 0.5.")


class SftConfig(_Strict):
    format: Literal["auto", "messages", "alpaca", "prompt-response"] = Field(
        "auto", description="Data layout: messages (a column of chat turns [{role, content}]), alpaca "
        "(instruction, input, output columns), prompt-response (the columns named below). auto: from the columns.")
    messages_column: str = Field("messages", description="Column of chat turns (format messages).")
    prompt_column: str = Field("prompt", description="Column of user prompts (format prompt-response).")
    response_column: str = Field("response", description="Column of assistant answers (format prompt-response).")
    system_prompt: str | None = Field(None, description="System message put before every conversation that has "
                                      "none.")
    chat_template: str | None = Field(None, description="Chat template: a Jinja string, or 'chatml' (a named "
                                      "default). Default: the tokenizer's own; chatml for a model without one.")
    train_on_prompt: bool = Field(False, description="Compute the loss on prompt tokens too. Default: on "
                                  "assistant tokens only.")
    packing: bool = Field(False, description="Pack short conversations into rows of max_length tokens; each "
                          "attends only to itself (position ids restart per conversation).")
    overlong: Literal["truncate", "drop"] = Field("truncate", description="Conversations longer than "
                                                  "model.max_length: truncate them, or drop them (counted).")
    eval_generations: int = Field(20, ge=0, description="Held-out test prompts answered by the base and the "
                                  "tuned model for the generation metrics and the side-by-side table.")
    max_new_tokens: int = Field(64, gt=0, description="Longest generated answer in evaluation.")


class AugmentConfig(_Strict):
    enabled: bool = Field(True, description="Augment training images (never validation or test).")
    hflip: float = Field(0.5, ge=0.0, le=1.0, description="Probability of a horizontal flip.")
    vflip: float = Field(0.0, ge=0.0, le=1.0, description="Probability of a vertical flip.")
    rotation: float = Field(10.0, ge=0.0, le=180.0, description="Largest random rotation, in degrees.")
    crop_scale: float | None = Field(0.8, gt=0.0, le=1.0, description="Random resized crop: smallest share of "
                                     "the image area kept. null: resize the whole image.")
    color_jitter: float = Field(0.1, ge=0.0, le=1.0, description="Strength of random brightness, contrast and "
                                "saturation changes.")
    noise: float = Field(0.0, ge=0.0, le=1.0, description="Standard deviation of Gaussian pixel noise (pixels "
                         "scaled to 0..1).")
    mixup: float = Field(0.0, ge=0.0, description="Mixup alpha (0: off). With cutmix, each batch takes one of the two.")
    cutmix: float = Field(0.0, ge=0.0, description="CutMix alpha (0: off).")


class ImageConfig(_Strict):
    image_column: str = Field("image", description="CSV/table data: column holding image paths (relative to the "
                              "table's folder).")
    label_names: list[str] | None = Field(None, description="Names of integer labels 0, 1, ... (e.g. NumPy .npz "
                                          "data). Default: the numbers.")
    size: int | None = Field(None, ge=16, le=1024, description="Input size in pixels (square). Default: the "
                             "model's pretrained input size.")
    max_side: int = Field(512, ge=16, description="Images are kept in memory with their longest side at most "
                          "this many pixels.")
    skip_unreadable: bool = Field(False, description="Skip (and count) unreadable or corrupt image files instead "
                                  "of stopping with an error.")
    freeze_epochs: int = Field(1, ge=0, description="method full: first train the new head this many epochs on "
                               "the frozen backbone's cached features, then unfreeze everything.")
    head_learning_rate: float = Field(1e-2, gt=0, description="Learning rate of the frozen-backbone head epochs.")
    cache_features: bool = Field(True, description="While the backbone is frozen (head epochs, linear-probe), "
                                 "train on its features computed once, instead of running it every step (which "
                                 "would let augmentation reach the frozen stage).")
    batchnorm: Literal["frozen", "train"] = Field("frozen", description="BatchNorm layers while fine-tuning: "
                                                  "frozen keeps the pre-trained statistics, scale and shift (the "
                                                  "cached features then match the unfrozen model exactly; stable "
                                                  "with small batches or images); train updates them per batch.")
    layer_decay: float = Field(0.7, gt=0.0, le=1.0, description="Discriminative learning rates after unfreezing: "
                               "each layer group from the head down trains at this factor of the one above it.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Training-time augmentation "
                                   "(torchvision transforms v2).")


class TabularConfig(_Strict):
    model: Literal["lightgbm", "xgboost", "logistic"] = Field("lightgbm", description="lightgbm (gradient-boosted "
                                                              "trees, native categorical handling), xgboost, or "
                                                              "logistic (regularised logistic / linear regression on "
                                                              "one-hot, standardised features).")
    drop_columns: list[str] = Field(default_factory=list, description="Columns that are not features (identifiers, "
                                    "columns known only after the outcome).")
    positive_label: str | None = Field(None, description="Binary: the class whose probability is the score "
                                       "(fraud, default, churn). Default: the rarer class in training.")
    init_from: str | None = Field(None, description="Warm start: a finished tabular run folder whose boosted model "
                                  "(lightgbm or xgboost) continues on this data with its feature schema; the report "
                                  "compares warm-started, this-data-only and source-only models.")
    class_weight: Literal["none", "balanced"] = Field("none", description="balanced: weight rows by inverse class "
                                                      "frequency (scale_pos_weight for binary boosting).")
    num_boost_round: int = Field(1000, gt=0, description="Most boosting rounds (trees per class).")
    early_stopping_rounds: int | None = Field(50, gt=0, description="Stop when the validation loss has not improved "
                                              "for this many rounds and keep the best round; null: train every round.")
    learning_rate: float = Field(0.05, gt=0.0, le=1.0, description="Boosting learning rate (shrinkage).")
    num_leaves: int = Field(31, ge=2, le=131072, description="Most leaves per tree (lightgbm; xgboost max_leaves).")
    max_depth: int = Field(-1, ge=-1, description="Deepest tree level; -1: no limit (xgboost: 6).")
    min_child_samples: int = Field(20, ge=1, description="Fewest training rows in a leaf (xgboost: "
                                   "min_child_weight).")
    feature_fraction: float = Field(1.0, gt=0.0, le=1.0, description="Share of features each tree sees.")
    bagging_fraction: float = Field(1.0, gt=0.0, le=1.0, description="Share of rows each tree sees (seeded).")
    lambda_l2: float = Field(0.0, ge=0.0, description="L2 regularisation of leaf values.")
    logistic_c: float = Field(1.0, gt=0.0, description="Inverse regularisation strength of the logistic "
                              "regression model and baseline.")
    max_categories: int = Field(1000, ge=2, description="Most distinct values of a categorical column in training; "
                                "more stops the run (an identifier or free text belongs in drop_columns).")
    threads: int | None = Field(None, gt=0, description="Threads for training. Default: the library's (all cores).")


class ParamSpec(_Strict):
    type: Literal["float", "int", "categorical"] = Field(..., description="Kind of parameter.")
    low: float | None = Field(None, description="Lower bound (float, int).")
    high: float | None = Field(None, description="Upper bound (float, int).")
    log: bool = Field(False, description="Sample on a log scale (float, int).")
    step: float | None = Field(None, description="Grid step (int; float for the grid sampler).")
    choices: list[Any] | None = Field(None, description="Values to choose from (categorical).")
    when: dict[str, Any] | None = Field(None, description="Only sample this parameter when earlier parameters "
                                        "take these values, e.g. {train.method: lora}.")

    @field_validator("choices")
    @classmethod
    def _non_empty(cls, value):
        if value is not None and not value:
            raise ValueError("expected at least one choice")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> "ParamSpec":
        if self.type == "categorical" and not self.choices:
            raise ValueError("a categorical parameter needs choices")
        if self.type != "categorical" and (self.low is None or self.high is None or self.low > self.high):
            raise ValueError(f"a {self.type} parameter needs low <= high")
        return self


class TuneConfig(_Strict):
    space: dict[str, ParamSpec] = Field(default_factory=dict, description="Search space: config keys (such as "
                                        "train.learning_rate) to parameter specs.")
    sampler: Literal["grid", "random", "tpe"] = Field("tpe", description="grid, random, or tpe (Bayesian).")
    pruner: Literal["none", "median", "asha", "hyperband"] = Field("asha", description="Stop bad trials early "
                                                                   "from their per-evaluation validation scores.")
    metric: Literal["accuracy", "macro_f1", "loss"] = Field("macro_f1", description="Validation metric to "
                                                            "optimise (loss is minimised, the others maximised; "
                                                            "task sft: loss).")
    n_trials: int | None = Field(20, gt=0, description="Finished trials (complete, pruned or failed) in the "
                                 "study, counted across all workers.")
    max_consecutive_failures: int = Field(3, gt=0, description="A worker whose trials fail this many times in a "
                                          "row (errors other than bad data or config, which stop the study at "
                                          "once) ends the study with the last error.")
    timeout: str | None = Field(None, description="Wall-clock budget of this worker, e.g. 90s, 20m, 2h.")
    storage: str | None = Field(None, description="SQLAlchemy URL of the study storage. Default: SQLite in the "
                                "study folder; PostgreSQL lets workers on several machines share a study.")
    study_name: str | None = Field(None, description="Study name (and folder). Default: <run_name or task>-study.")
    seed: int = Field(0, description="Sampler seed.")
    prune_after: int | None = Field(None, gt=0, description="Evaluations a trial completes before a pruner may "
                                    "stop it. Default: half the planned epochs (first-epoch rankings mislead: "
                                    "higher learning rates start slower and finish higher).")
    startup_trials: int | None = Field(None, gt=0, description="Random trials before TPE models the space. "
                                       "Default: a quarter of n_trials, between 3 and 10.")

    @field_validator("study_name")
    @classmethod
    def _plain_study_name(cls, value: str | None) -> str | None:
        return _plain_or_none(value)


def parse_partition(value: str) -> tuple[str, str | float | None]:
    """`iid`, `dirichlet:ALPHA` (ALPHA > 0) or `by-column:COL` as (kind, argument); ValueError says what is valid."""
    kind, sep, arg = str(value).partition(":")
    if kind == "iid" and not sep:
        return "iid", None
    if kind == "dirichlet" and sep:
        try:
            alpha = float(arg)
        except ValueError:
            alpha = -1.0
        if alpha > 0 and alpha != float("inf"):
            return "dirichlet", alpha
        raise ValueError(f"dirichlet needs a positive concentration, e.g. dirichlet:0.3; found {arg!r}")
    if kind == "by-column" and sep and arg.strip():
        return "by-column", arg.strip()
    raise ValueError("expected iid, dirichlet:ALPHA (e.g. dirichlet:0.3) or by-column:COLUMN")


def parse_strategy(value: str) -> tuple[str, float | None]:
    """`fedavg`, `fedprox:MU` (MU >= 0) or `fedadam` as (name, argument); ValueError says what is valid."""
    name, sep, arg = str(value).partition(":")
    if name in ("fedavg", "fedadam") and not sep:
        return name, None
    if name == "fedprox" and sep:
        try:
            mu = float(arg)
        except ValueError:
            mu = -1.0
        if 0 <= mu < float("inf"):
            return "fedprox", mu
        raise ValueError(f"fedprox needs a proximal weight MU >= 0, e.g. fedprox:0.01; found {arg!r}")
    raise ValueError("expected fedavg, fedprox:MU (e.g. fedprox:0.01) or fedadam")


class DpConfig(_Strict):
    side: Literal["server", "client"] = Field("server", description="Where each client's update is clipped: "
                                               "server (the server clips what it receives; clients trust it) or "
                                               "client (each client clips before sending, Flower's "
                                               "fixedclipping_mod). The server adds the noise either way.")
    clip: float = Field(..., gt=0.0, description="L2 norm each client's update (new minus global tensors) is "
                        "clipped to.")
    noise_multiplier: float = Field(..., ge=0.0, description="Gaussian noise on the averaged update, standard "
                                    "deviation noise_multiplier * clip / clients per round. More noise, smaller "
                                    "epsilon, worse model.")
    delta: float = Field(1e-5, gt=0.0, lt=1.0, description="The delta the privacy budget epsilon is reported at.")


class FederatedConfig(_Strict):
    clients: int | None = Field(None, ge=2, le=1000, description="Silos (Flower SuperNodes), each training on its "
                                "own rows. Default: one per silo file, else 3.")
    partition: str | None = Field(None, description="How a simulation splits the training rows into silos (seeded "
                                  "by train.seed): iid, dirichlet:ALPHA (label shares per silo drawn from a "
                                  "Dirichlet; small ALPHA = skewed silos) or by-column:COLUMN (one silo per value of "
                                  "a column, e.g. a branch id). Default: iid. Not with silo_files.")
    silo_files: list[Path] | None = Field(None, description="One training data file per silo (real deployments: "
                                          "each site keeps its own file). Not with partition.")
    rounds: int = Field(5, ge=1, le=10000, description="Federated rounds: send the global model, train locally, "
                        "aggregate.")
    local_epochs: int = Field(1, ge=1, le=1000, description="Passes over its own rows each client makes per round.")
    fraction_fit: float = Field(1.0, gt=0.0, le=1.0, description="Share of the clients sampled to train each round "
                                "(at least min_available_clients).")
    min_available_clients: int | None = Field(None, ge=1, description="A round needs this many successful client "
                                              "replies, or the run fails (exit code 1). Default: every sampled "
                                              "client; lower it to continue past a crashed client.")
    strategy: str = Field("fedavg", description="Server aggregation: fedavg, fedprox:MU (FedAvg plus a proximal "
                          "term MU/2 * |w - w_global|^2 in each client's loss) or fedadam (Adam on the averaged "
                          "update, server_learning_rate).")
    server_learning_rate: float = Field(0.01, gt=0.0, description="Server step size of fedadam (eta).")
    transfer: Literal["adapter", "head", "full"] = Field("adapter", description="What travels between server and "
                                                         "clients: adapter (LoRA tensors and the task head; "
                                                         "train.method lora), head (the head only, a frozen "
                                                         "body; linear-probe) or full (every weight; full). "
                                                         "Default: adapter; head for image-classification "
                                                         "(a CNN has no LoRA).")
    local_loss: Literal["plain", "prior-adjusted"] = Field("plain", description="Classification: the loss each "
                                                          "client trains with. prior-adjusted adds the log of the "
                                                          "silo's own label shares to the logits (logit adjustment, "
                                                          "as FedLC), so a silo that holds few labels does not pull "
                                                          "the shared head towards them; the global model predicts "
                                                          "unadjusted.")
    refit_head: bool | None = Field(None, description="Classification: after the rounds, refit the classifier "
                                    "head in closed form (LDA) from label counts, feature means and within-label "
                                    "scatter pooled across silos under the best global body, and keep it when it "
                                    "validates better than the averaged head. Corrects the head drift of skewed "
                                    "silos; the statistics travel once, not noised. Default: on for "
                                    "classification without dp.")
    client_cpus: float = Field(1.0, gt=0.0, description="Simulation: CPU cores reserved per client (Ray runs "
                               "as many clients at once as the machine's cores allow).")
    compare: bool = Field(True, description="Also train the comparison models on the same test split: "
                          "centralized (all silos pooled, same epochs) and each silo alone.")
    round_timeout: float = Field(3600.0, gt=0.0, description="Seconds the server waits for a round's replies.")
    dp: DpConfig | None = Field(None, description="Differential privacy per client (silo), through Flower's DP "
                                "wrappers: {side, clip, noise_multiplier, delta}. The report gives epsilon at delta; "
                                "the run fails when the DP model does not beat the base model on the test split.")

    @field_validator("partition")
    @classmethod
    def _partition(cls, value: str | None) -> str | None:
        if value is not None:
            parse_partition(value)
        return value

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        parse_strategy(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "FederatedConfig":
        if self.silo_files is not None:
            if self.partition is not None:
                raise FieldError("partition", self.partition, "give either partition (a simulation splits "
                                 "data.train) or silo_files (one file per silo), not both")
            if len(self.silo_files) < 2:
                raise FieldError("silo_files", [str(p) for p in self.silo_files], "expected at least 2 files")
            if self.clients is not None and self.clients != len(self.silo_files):
                raise FieldError("clients", self.clients, f"{len(self.silo_files)} silo_files are given; "
                                 "clients must match (or be left out)")
        if self.min_available_clients is not None and self.min_available_clients > self.n_clients:
            raise FieldError("min_available_clients", self.min_available_clients,
                             f"more than the {self.n_clients} clients")
        return self

    @property
    def n_clients(self) -> int:
        """The number of silos."""
        return self.clients or (len(self.silo_files) if self.silo_files else 3)


class RunConfig(_Strict):
    task: str = Field("text-classification", description="What to train: text-classification, "
                      "image-classification, sft (instruction / chat fine-tuning of a causal language model), "
                      "tabular-classification or tabular-regression (gradient boosting on a table's columns).")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    sft: SftConfig = Field(default_factory=SftConfig, description="Instruction / chat fine-tuning (task: sft).")
    image: ImageConfig = Field(default_factory=ImageConfig, description="Image classification "
                               "(task: image-classification).")
    tabular: TabularConfig = Field(default_factory=TabularConfig, description="Tabular prediction "
                                   "(task: tabular-classification, tabular-regression).")
    federated: FederatedConfig = Field(default_factory=FederatedConfig, description="Federated fine-tuning on "
                                       "Flower (`tunesmith federate`).")
    output_dir: Path = Field(Path("runs"), description="Folder that receives the run folder.")
    run_name: str | None = Field(None, description="Name of the run folder. Default: task, model and time.")

    @field_validator("run_name")
    @classmethod
    def _plain_run_name(cls, value: str | None) -> str | None:
        return _plain_or_none(value)

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        # the task names only: each task checks the rest of the config itself (tunesmith.tasks.configure)
        from tunesmith.tasks import task_names

        if value not in task_names():
            raise ValueError(f"expected one of {', '.join(task_names())}")
        return value


def field_error(field: str, value: Any, why: str) -> UserError:
    """The one line for a value a task cannot use, in the form of every config error:
    `config: train.method = 'lora': does not apply to task X; use full or linear-probe`."""
    return UserError(f"config: {field} = {value!r}: {why}")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn `a.b=value` strings into a nested dict; values are parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"override {item!r}: expected key.sub=value, for example train.epochs=3")
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r}: {part!r} is set both as a value and as a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            problem = str(getattr(err, "problem", None) or err).splitlines()[0]
            raise UserError(f"override {item!r}: the value is not valid YAML ({problem}); quote a text value, "
                            f"e.g. {key.strip()}='...'") from None
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _anchor_paths(raw: dict[str, Any], root: Path) -> None:
    """Relative data paths in a YAML file are relative to that file, so examples run from anywhere."""
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("train", "validation", "test"):
            if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                data[key] = str((root / data[key]).resolve())
    fed = raw.get("federated")
    if isinstance(fed, dict) and isinstance(fed.get("silo_files"), list):
        fed["silo_files"] = [str((root / f).resolve()) if isinstance(f, str) and not Path(f).is_absolute() else f
                             for f in fed["silo_files"]]
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("weights"), str) and not Path(model["weights"]).is_absolute():
        model["weights"] = str((root / model["weights"]).resolve())


def format_validation_error(err: ValidationError, source: str = "config") -> str:
    """One line per problem, naming the field, the value found and what is valid."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown field '{where}'{_valid_siblings(e['loc'])}")
        elif e["type"] == "missing":
            lines.append(f"{source}: field '{where}' is required")
        elif isinstance((e.get("ctx") or {}).get("error"), FieldError):
            # a model-level check: its loc is the model, its input the whole mapping; name the field instead
            fe = e["ctx"]["error"]
            lines.append(f"{source}: {'.'.join([*map(str, e['loc']), fe.field])} = {fe.value!r}: {fe.reason}")
        elif e["type"] == "value_error" and isinstance(e.get("input"), dict):
            # another model-level check: its message names the field; the mapping itself says nothing
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {where + ': ' if where else ''}{msg}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {where} = {e.get('input')!r}: {msg}")
    return "; ".join(lines)


def _valid_siblings(loc: tuple) -> str:
    model: type[BaseModel] = RunConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return ""
        model = ann
    return f"; valid fields here: {', '.join(model.model_fields)}"


def build_config(raw: dict[str, Any], overrides: list[str] | None = None, source: str = "config") -> RunConfig:
    """Validate a config mapping (plus overrides); bad values raise UserError naming the field."""
    raw = _merge(raw, parse_overrides(overrides or []))
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise UserError(format_validation_error(err, source)) from None
    if cfg.data.train is None:
        raise UserError(f"{source}: field 'data.train' is required (a CSV, TSV, JSONL or Parquet file; for images "
                        "also a folder or a NumPy .npz)")
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config file, apply `key.sub=value` overrides and validate."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{path}: not valid YAML: {first}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of sections (task, model, data, train), found "
                        f"{type(raw).__name__}")
    _anchor_paths(raw, path.parent)
    return build_config(raw, overrides, source=str(path))


def save_config(cfg: RunConfig, path: Path) -> None:
    """Write the resolved config as YAML (paths as strings; a storage password masked)."""
    from tunesmith.io import atomic_write_text
    from tunesmith.redact import mask_url

    data = cfg.model_dump(mode="json")
    data["tune"]["storage"] = mask_url(data["tune"]["storage"])
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def describe_fields(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, description) for every leaf field: the source of `train --help`."""
    rows = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        key = f"{prefix}{name}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(describe_fields(ann, key + "."))
        else:
            default = field.get_default(call_default_factory=True)
            rows.append((key, "null" if default is None else str(default), field.description or ""))
    return rows
