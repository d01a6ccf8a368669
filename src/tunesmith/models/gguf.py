"""Convert a GGUF checkpoint once into an ordinary transformers folder, cached per user.

transformers reads GGUF files (`gguf_file=`) by de-quantising them, which takes tens of seconds,
and refuses to save such a model. The conversion builds a fresh model from the config (without
its GGUF quantization entry), loads the weights and saves it as safetensors; later runs load the
folder in a second. Folder: $TUNESMITH_CACHE (default ~/.cache/tunesmith)/models/<name>.
"""
from __future__ import annotations

import copy
import fcntl
import os
import tempfile
from pathlib import Path

from tunesmith.io import cache_dir


def converted(name: str, folder: Path, gguf_file: str) -> Path:
    """The cached transformers folder of `folder/gguf_file`, converting it on first use."""
    out = cache_dir() / "models" / name
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{name}.lock", "w") as lock:  # processes started together convert once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "config.json").is_file():
            tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{name}."))
            _convert(Path(folder), gguf_file, tmp)
            os.replace(tmp, out)
    return out


def _convert(folder: Path, gguf_file: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.models import quiet_hf

    quiet_hf()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):  # else the saved folder still claims to be GGUF-quantised
        delattr(config, "quantization_config")
    config._name_or_path = ""
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = copy.deepcopy(loaded.generation_config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
