"""Model stage: the registry of pre-trained assets and how a method (full, LoRA, probe) wraps them."""


def quiet_hf() -> None:
    """Keep transformers' load reports and per-shard progress bars out of tunesmith's output."""
    import warnings

    from transformers.utils import logging as hf_logging

    # PEFT still calls a transformers method deprecated in v5; the warning is not the user's business
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
