"""DRO: a safety prompt learnt as continuous embeddings (Zheng et al., "On Prompt-Driven Safeguarding for Large
Language Models", ICML 2024, arXiv 2401.18018).

A written safety prompt moves harmful and harmless requests alike towards refusal. DRO keeps the model frozen and
trains only the system prompt's input embeddings, so that harmful requests move along the direction in which the
model's refusal probability rises and harmless ones against it:

1. **Anchors and labels.** Harmful and harmless *training* requests (default: `datagen/seeds/harmful_train.jsonl`
   and `datagen/seeds/ordinary.jsonl`; registered evaluation benchmarks are refused) are answered greedily by the
   model under two conditions, no system prompt and the written safety prompt (`init_prompt`, by default the
   `safety_prior` condition's); the refusal judge labels each answer. These labels are the model's own behaviour.
2. **The low-dimensional space and the directions.** A representation is the hidden state at the last prompt
   token (`layer`: -1, the final normalised one, as in the paper). PCA over the anchors' representations under
   both conditions keeps `pca_components` (m) directions; a logistic regression on the m coordinates predicts
   refusal from the judge's labels (its weight is the refusal direction) and another predicts harmfulness.
3. **The objective.** The soft prompt starts as the written prompt's token embeddings. For an anchor with
   harmfulness label l (1 harmful), z its coordinates with the soft prompt and z0 with the written prompt:
   `L_refusal = BCE(w_r . (z - z0), l)`: the refusal logit, relative to the written prompt's, must rise for a
   harmful request and fall for a harmless one; `L_harm = BCE(w_h . (z - z0), l)` does the same along the
   harmfulness direction (weight `harmfulness_weight`, 0.01); and `L_reg` is the squared change of the
   representation *outside* the m-dimensional subspace, divided by its dimension (weight `regularization_weight`,
   0.001), so the prompt moves the representation only where the classifiers read it and otherwise stays with the
   written prompt. With `balance_classes` (default) each anchor's term in the two direction losses is weighted by
   n / (2 n_class), so harmful and harmless anchors count equally: the paper's anchors are balanced, and with a
   majority of harmless ones the shift shared by all requests, towards less refusal, wins. AdamW, gradient
   clipping at 1, the paper's learning rate 1e-3, batch 50 and 40 epochs.
4. **Output** (`output_dir`): `soft_prompt.safetensors` + `soft_prompt.json` (`evoalign.models.soft_prompt`: the
   learnt embeddings and their metadata: base model, virtual tokens, the written prompt, the placement), `dro.json`
   (sizes, the classifiers' fit, the loss curve, and, with `evaluate_anchors`, the anchors' refusal rates with no
   prompt, the written one and the learnt one), `anchors.json` (each anchor's answers and labels), `run_info.json`.
   The judged answers and an end-of-epoch `checkpoint.pt` make an interrupted run resume; every file is written
   atomically and the soft prompt's pair is checked by hash on load.

Any stage uses the result as an hf model option: `{spec: smollm2, soft_prompt: runs/dro-smollm2}`.

Ours rather than the paper's: the judge (the paper matches refusal strings), one written prompt rather than three
in the estimation, scikit-learn's L2 logistic regression fitted once (the paper averages ten cross-validated fits),
and the placement as the system message's text in the model's own chat template.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoalign.benchmarks import BENCHMARKS, check_suite, load_suite
from evoalign.config import config_to_dict, parse_config
from evoalign.errors import ConfigError, DataError, ModelError
from evoalign.io import atomic_write_bytes, atomic_write_json, read_text_strict
from evoalign.judges.base import is_refusing
from evoalign.judges.loading import check_judge, load_judge
from evoalign.models import TRANSFORMERS, check_spec, load_model, parse_spec
from evoalign.models.base import SamplingParams
from evoalign.models.pool import ModelPool
from evoalign.models.soft_prompt import SoftPrompt, inserted, soft_prompt_ids
from evoalign.progress import progress_bar
from evoalign.prompts import CONDITIONS, Message, with_condition
from evoalign.runinfo import write_run_info

logger = logging.getLogger("evoalign.dro")
REPORT = "dro.json"
ANCHORS = "anchors.json"
CHECKPOINT = "checkpoint.pt"
KINDS = ("harmful", "harmless")
SEEDS = "datagen/seeds"


def _seed_suite(name: str, file: str, kind: str) -> dict[str, Any]:
    return {name: {"path": f"{SEEDS}/{file}", "kind": kind, "fields": {"prompt": "instruction"}}}


@dataclass
class DROConfig:
    """Learn a safety prompt as soft embeddings with DRO (Zheng et al. 2024); the model stays frozen."""

    output_dir: str = field(metadata={"help": "Folder for the soft prompt, its metadata and the report."})
    model: Any = field(
        default="smollm2", metadata={"help": "Frozen base model spec (smollm2, smollm2-guarded, hf:<folder or id>)."}
    )
    init_prompt: str = field(
        default="safety_prior",
        metadata={
            "help": "The written safety prompt the soft prompt starts from: a prompt condition that starts with a "
            "system message (safety_prior; refusal_prone, whose example turns then stay in every conversation), "
            "or the prompt's text."
        },
    )
    harmful: Any = field(
        default_factory=lambda: _seed_suite("harmful_train", "harmful_train.jsonl", "harmful"),
        metadata={"help": "Harmful anchor requests (training prompts; eval's benchmark form, e.g. with `limit`)."},
    )
    harmless: Any = field(
        default_factory=lambda: _seed_suite("ordinary", "ordinary.jsonl", "benign"),
        metadata={"help": "Harmless anchor requests (training prompts; eval's benchmark form, e.g. with `limit`)."},
    )
    judge: str = field(default="evoalign", metadata={"help": "Refusal judge labelling the model's own answers."})
    max_new_tokens: int = field(default=48, metadata={"help": "Greedy tokens generated per anchor for its label."})
    generation_batch_size: int = field(default=32, metadata={"help": "Prompts per generation batch."})
    layer: int = field(
        default=-1,
        metadata={"help": "Hidden-state index of the representation (-1: the final normalised layer, the paper's)."},
    )
    pca_components: int = field(default=4, metadata={"help": "Dimension m of the PCA subspace (the paper: 4)."})
    harmfulness_weight: float = field(default=0.01, metadata={"help": "Weight of the harmfulness-direction loss."})
    regularization_weight: float = field(
        default=1e-3, metadata={"help": "Weight of the change outside the PCA subspace (keeps the written prompt's)."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the soft prompt."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (torch's default)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    balance_classes: bool = field(
        default=True,
        metadata={
            "help": "Weight each anchor by n / (2 * its class's count) in both direction losses, so harmful and "
            "harmless anchors count equally, as with the paper's balanced anchors (false: every anchor weighs 1)."
        },
    )
    num_epochs: int = field(default=40, metadata={"help": "Passes over the anchors."})
    batch_size: int = field(default=50, metadata={"help": "Anchors per optimisation step."})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in the backward pass (less memory, large models)."}
    )
    evaluate_anchors: bool = field(
        default=True, metadata={"help": "After training, answer and judge the anchors behind the learnt prompt."}
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "Dtype of the frozen model.", "choices": ["auto", "bfloat16", "float16", "float32"]},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the anchors' `limit` subsamples and the batch order."})

    def validate(self, where: str) -> None:
        """ConfigError naming `where` and the key for a malformed setting; nothing is loaded."""
        check_spec(self.model, f"{where}: 'model'")
        backend, _, options = parse_spec(self.model)
        if backend == "openai":
            raise ConfigError(f"{where}: 'model' must be a local (hf) model: DRO back-propagates through it")
        if options.get("soft_prompt") or options.get("steering"):
            raise ConfigError(f"{where}: 'model' is the plain base model, without soft_prompt or steering")
        check_judge(self.judge, f"{where}: 'judge'")
        written_prompt(self.init_prompt, where)
        for name in KINDS:
            suite = getattr(self, name)
            check_suite(suite, f"{where}: '{name}'")
            registered = [n for n in suite if n in BENCHMARKS]
            if registered:
                raise ConfigError(
                    f"{where}: '{name}' names the evaluation benchmark '{registered[0]}'; DRO fits on training "
                    "prompts only"
                )
        positive = ("max_new_tokens", "generation_batch_size", "pca_components", "num_epochs", "batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: '{name}' must be >= 1, got {getattr(self, name)}")
        for name in ("harmfulness_weight", "regularization_weight", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}: '{name}' must be >= 0, got {getattr(self, name)}")
        for name in ("learning_rate", "max_grad_norm"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{where}: '{name}' must be > 0, got {getattr(self, name)}")
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ConfigError(f"{where}: 'dtype' is auto, bfloat16, float16 or float32, got {self.dtype!r}")


def written_prompt(init_prompt: str, where: str = "config") -> tuple[str, list[Message]]:
    """(the system prompt's text the soft prompt replaces, the turns that follow it in every conversation).

    A condition that is one system message has no turns after it; one with example turns after its system message
    (refusal_prone) keeps them, so that the soft prompt replaces only the written system text; text given directly
    is a system prompt with no turns after it."""
    if not isinstance(init_prompt, str) or not init_prompt.strip():
        raise ConfigError(f"{where}: 'init_prompt' must be a condition name or the prompt's text, got {init_prompt!r}")
    prefix = CONDITIONS.get(init_prompt)
    if prefix is None:
        return init_prompt, []
    if not prefix or prefix[0]["role"] != "system" or any(m["role"] == "system" for m in prefix[1:]):
        raise ConfigError(
            f"{where}: 'init_prompt' condition '{init_prompt}' does not start with its only system message; a soft "
            "prompt replaces a system prompt (give the prompt's text instead)"
        )
    return prefix[0]["content"], [dict(m) for m in prefix[1:]]


def context_condition(context: list[Message]) -> str | None:
    """The named prompt condition made of exactly these turns (what a stage puts after the soft prompt), if any."""
    return next((name for name, prefix in CONDITIONS.items() if prefix == context), None)


# --- anchors and their labels ---


def load_anchors(config: DROConfig) -> dict[str, list[str]]:
    """{'harmful': [...], 'harmless': [...]} from the two suites; a request in both is a DataError."""
    anchors = {}
    for kind in KINDS:
        sets = load_suite(getattr(config, kind), seed=config.seed)
        prompts = list(dict.fromkeys(item["prompt"] for data in sets for item in data.items))
        if not prompts:
            raise DataError(f"'{kind}' holds no anchor requests")
        anchors[kind] = prompts
    shared = set(anchors["harmful"]) & set(anchors["harmless"])
    if shared:
        raise DataError(f"'harmful' and 'harmless' share {len(shared)} request(s), e.g. {sorted(shared)[0]!r}")
    return anchors


def conditions(init_text: str, context: list[Message] = ()) -> dict[str, list[Message]]:
    """The two prompt conditions the directions are estimated under: no system prompt and the written one, each
    followed by the written prompt's example turns (`context`, usually none)."""
    return {"none": [*context], "written": [{"role": "system", "content": init_text}, *context]}


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def judge_answers(chat_model: Any, judge: Any, prompts: list[str], prefix: list[dict[str, str]], config, desc: str):
    """(answers, judge labels) of `prompts` behind the system prefix, greedy and batched."""
    params = SamplingParams(temperature=0.0, max_new_tokens=config.max_new_tokens, logprobs=False)
    answers = [s[0].text for s in chat_model.generate(with_condition(prompts, prefix), params, desc=desc)]
    labels = [row["label"] for row in judge.classify([{"prompt": p, "response": a} for p, a in zip(prompts, answers)])]
    return answers, labels


def anchor_labels(chat_model: Any, judge: Any, anchors, config: DROConfig, out: Path):
    """{condition: {kind: [refused?]}} from the model's own greedy answers; reused from `anchors.json` on resume."""
    path = out / ANCHORS
    init_text, context = written_prompt(config.init_prompt)
    key = _fingerprint(chat_model.identity, anchors, init_text, config.judge, config.max_new_tokens)
    if context:  # keeps the fingerprints of runs without example turns as they were
        key = _fingerprint(key, context)
    if path.is_file():
        saved = json.loads(read_text_strict(path))
        if saved.get("fingerprint") == key:
            logger.info("reusing the judged anchor answers in %s", path)
            return _flags(saved["rows"])
    rows = []
    for condition, prefix in conditions(init_text, context).items():
        for kind in KINDS:
            answers, labels = judge_answers(chat_model, judge, anchors[kind], prefix, config, f"{condition} {kind}")
            rows += [
                {"condition": condition, "kind": kind, "prompt": p, "response": a, "label": lab}
                for p, a, lab in zip(anchors[kind], answers, labels)
            ]
    atomic_write_json(path, {"fingerprint": key, "rows": rows})
    return _flags(rows)


def _flags(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[bool]]]:
    found: dict[str, dict[str, list[bool]]] = {}
    for row in rows:
        found.setdefault(row["condition"], {}).setdefault(row["kind"], []).append(is_refusing(row["label"]))
    return found


# --- representations, PCA and the two directions ---


def _left_pad(rows: list[list[int]], pad: int, device: Any):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def last_token_states(model: Any, ids: list[list[int]], pad: int, layer: int):
    """Hidden state `layer` at each prompt's last token, float32 [len(ids), hidden]; gradients flow when enabled."""
    device = model.get_input_embeddings().weight.device
    input_ids, mask = _left_pad(ids, pad, device)
    out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True, use_cache=False, logits_to_keep=1)
    states = out.hidden_states
    if not -len(states) <= layer < len(states):
        raise DataError(f"'layer' {layer} does not exist: the model has hidden states 0 to {len(states) - 1}")
    return states[layer][:, -1, :].float()


def representations(chat_model: Any, prompts: list[str], prefix, config: DROConfig, desc: str):
    """Representations of `prompts` behind a written system prefix (the text path every stage uses)."""
    import torch

    ids = chat_model.prompt_ids(with_condition(prompts, prefix))
    pad = _pad_id(chat_model.hf_tokenizer)
    chunks = []
    with torch.no_grad(), progress_bar(total=len(ids), desc=desc) as bar:
        for start in range(0, len(ids), config.batch_size):
            chunk = ids[start : start + config.batch_size]
            chunks.append(last_token_states(chat_model.hf_model, chunk, pad, config.layer).cpu())
            bar.update(len(chunk))
    return torch.cat(chunks)


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@dataclass
class Estimate:
    """The PCA subspace (mean, m orthonormal components) and the two logistic regressions on its coordinates."""

    mean: Any  # [hidden]
    components: Any  # [m, hidden], orthonormal rows
    refusal_weight: Any  # [m]
    refusal_bias: float
    harmful_weight: Any  # [m]
    harmful_bias: float
    explained_variance: list[float]
    refusal_accuracy: float
    harmful_accuracy: float

    def coordinates(self, states: Any) -> Any:
        return (states - self.mean.to(states.device)) @ self.components.to(states.device).T


def _logistic(features: Any, labels: list[int], seed: int) -> tuple[Any, float, float]:
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    x = features.double().numpy()
    fit = LogisticRegression(max_iter=5000, random_state=seed).fit(x, labels)
    accuracy = float(np.mean(fit.predict(x) == np.asarray(labels)))
    return torch.tensor(fit.coef_[0], dtype=torch.float32), float(fit.intercept_[0]), accuracy


def estimate_directions(states: Any, refused: list[bool], harmful: list[bool], m: int, seed: int = 0) -> Estimate:
    """PCA (top `m` components) of `states` [n, hidden], then logistic regressions of refusal and of harmfulness
    on the coordinates. A DataError when either label has a single class: the direction would be undefined."""
    import torch

    if m >= min(states.shape):
        raise DataError(f"'pca_components' {m} must be below the number of representations and the hidden size")
    if len(set(harmful)) < 2:
        raise DataError("the anchors need both harmful and harmless requests")
    if len(set(refused)) < 2:
        kind = "refused" if refused[0] else "answered"
        raise DataError(
            f"the model {kind} every anchor under both prompts, so no refusal direction can be estimated; use "
            "more anchors, another judge or another written prompt"
        )
    fewest = min(sum(refused), len(refused) - sum(refused))
    if fewest < 10:
        logger.warning("the refusal direction rests on %d answers of the rarer kind (refused or not)", fewest)
    x = states.double()
    mean = x.mean(dim=0)
    _, singular, vh = torch.linalg.svd(x - mean, full_matrices=False)
    components = vh[:m]
    components = components * torch.sign(components.gather(1, components.abs().argmax(1, keepdim=True)))
    variance = (singular**2) / (singular**2).sum()
    coords = (x - mean) @ components.T
    r_weight, r_bias, r_acc = _logistic(coords, [int(v) for v in refused], seed)
    h_weight, h_bias, h_acc = _logistic(coords, [int(v) for v in harmful], seed)
    explained = [round(float(v), 4) for v in variance[:m]]
    return Estimate(mean.float(), components.float(), r_weight, r_bias, h_weight, h_bias, explained, r_acc, h_acc)


# --- the objective and the training loop ---


def dro_losses(states: Any, base_states: Any, harmful: Any, estimate: Estimate, weights: Any = None) -> dict[str, Any]:
    """The three terms (module docstring) for representations with the soft prompt and with the written one;
    `weights` (one per anchor, default 1) scale each anchor's term in the two direction losses."""
    import torch.nn.functional as F

    delta = estimate.coordinates(states) - estimate.coordinates(base_states)
    refusal_logit = delta @ estimate.refusal_weight.to(delta.device)
    harmful_logit = delta @ estimate.harmful_weight.to(delta.device)
    change = states - base_states
    components = estimate.components.to(change.device)
    outside = change - (change @ components.T) @ components
    hidden, m = states.shape[-1], components.shape[0]
    return {
        "refusal": F.binary_cross_entropy_with_logits(refusal_logit, harmful, weight=weights),
        "harmfulness": F.binary_cross_entropy_with_logits(harmful_logit, harmful, weight=weights),
        "regularization": outside.pow(2).sum(dim=-1).mean() / (hidden - m),
    }


def class_weights(harmful: list[bool]) -> Any:
    """n / (2 * the anchor's class count) per anchor: both classes weigh n / 2 in all, whatever their sizes."""
    import torch

    count = {kind: sum(h == kind for h in harmful) for kind in (True, False)}
    return torch.tensor([len(harmful) / (2 * count[h]) for h in harmful])


def initial_embeddings(chat_model: Any, init_text: str) -> tuple[Any, list[int]]:
    """The written prompt's token embeddings (float32 [n, hidden]) and its token ids."""
    import torch

    ids = chat_model.hf_tokenizer(init_text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError(f"'init_prompt' {init_text!r} has no tokens")
    module = chat_model.hf_model.get_input_embeddings()  # its output, which the hooks replace (scaled or not)
    with torch.no_grad():
        embeddings = module(torch.tensor(ids, device=module.weight.device))
    return embeddings.detach().float().cpu().clone(), ids


def soft_states(
    model: Any, tokenizer: Any, prompts: list[str], embeddings: Any, layer: int, context: list[Message] = ()
):
    """Representations of `prompts` (user turns after the `context` turns) with `embeddings` as the system prompt."""
    with inserted(model, embeddings) as first_id:
        ids = soft_prompt_ids(tokenizer, with_condition(prompts, list(context)), first_id, embeddings.shape[0])
        return last_token_states(model, ids, _pad_id(tokenizer), layer)


def train_soft_prompt(
    chat_model: Any,
    prompts: list[str],
    harmful: list[bool],
    estimate: Estimate,
    init: Any,
    config: DROConfig,
    *,
    checkpoint: Path | None = None,
    key: str = "",
) -> tuple[Any, list[dict[str, float]]]:
    """The trained soft prompt (float32 [n, hidden]) and the per-step losses; only the prompt changes.

    With `checkpoint`, the prompt, optimizer and log are saved atomically after every epoch and a matching
    checkpoint (same `key`) is resumed from."""
    import torch

    model, tokenizer = chat_model.hf_model, chat_model.hf_tokenizer
    context = written_prompt(config.init_prompt)[1]
    device = model.get_input_embeddings().weight.device
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    labels = torch.tensor([float(h) for h in harmful], device=device)
    weights = class_weights(harmful).to(device) if config.balance_classes else torch.ones_like(labels)
    with torch.no_grad():
        base = torch.cat(
            [
                soft_states(
                    model, tokenizer, prompts[s : s + config.batch_size], init.to(device), config.layer, context
                )
                for s in range(0, len(prompts), config.batch_size)
            ]
        )
    soft = torch.nn.Parameter(init.clone().to(device))
    optimizer = torch.optim.AdamW([soft], lr=config.learning_rate, weight_decay=config.weight_decay)
    log: list[dict[str, float]] = []
    start = 0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state.get("key") == key:
            with torch.no_grad():
                soft.copy_(state["soft"])
            optimizer.load_state_dict(state["optimizer"])
            log, start = list(state["log"]), int(state["epoch"])
            logger.info("resuming DRO from epoch %d (%s)", start, checkpoint)
    steps_per_epoch = -(-len(prompts) // config.batch_size)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()  # transformers checkpoints only in training mode (Llama-style models have no dropout)
    try:
        with progress_bar(total=(config.num_epochs - start) * steps_per_epoch, desc="dro", unit="step") as bar:
            for epoch in range(start, config.num_epochs):
                order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(config.seed + epoch))
                for begin in range(0, len(prompts), config.batch_size):
                    batch = order[begin : begin + config.batch_size].tolist()
                    batch_prompts = [prompts[i] for i in batch]
                    states = soft_states(model, tokenizer, batch_prompts, soft, config.layer, context)
                    terms = dro_losses(states, base[batch], labels[batch], estimate, weights[batch])
                    loss = (
                        terms["refusal"]
                        + config.harmfulness_weight * terms["harmfulness"]
                        + config.regularization_weight * terms["regularization"]
                    )
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_([soft], config.max_grad_norm)
                    optimizer.step()
                    row = {"epoch": epoch, "step": len(log) + 1, "loss": float(loss.detach())}
                    row.update({name: float(value.detach()) for name, value in terms.items()})
                    log.append(row)
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                    bar.update(1)
                if checkpoint is not None:
                    _save_checkpoint(checkpoint, key, epoch + 1, soft, optimizer, log)
    finally:
        if config.gradient_checkpointing:
            model.gradient_checkpointing_disable()
        model.eval()
    return soft.detach().float().cpu(), log


def _save_checkpoint(path: Path, key: str, epoch: int, soft: Any, optimizer: Any, log: list) -> None:
    import io

    import torch

    buffer = io.BytesIO()
    state = {"key": key, "epoch": epoch, "soft": soft.detach().cpu(), "optimizer": optimizer.state_dict()}
    torch.save({**state, "log": log}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


# --- the recipe ---


def _percent(flags: list[bool]) -> float:
    return round(100.0 * sum(flags) / len(flags), 1)


def _rates(flags: dict[str, list[bool]]) -> dict[str, float]:
    return {f"{kind}_refusal": _percent(flags[kind]) for kind in KINDS}


def run_dro(config: DROConfig) -> dict[str, Any]:
    """Run the recipe (module docstring); returns the report written to `dro.json`."""
    import torch

    out = Path(config.output_dir)
    if (out / REPORT).is_file():
        logger.info("%s already done", out)
        return json.loads(read_text_strict(out / REPORT))
    torch.manual_seed(config.seed)
    init_text, context = written_prompt(config.init_prompt)
    anchors = load_anchors(config)
    model_spec = config.model if isinstance(config.model, dict) else {"spec": config.model}
    chat_model = load_model({**model_spec, "dtype": config.dtype, "batch_size": config.generation_batch_size})
    if TRANSFORMERS not in chat_model.capabilities:
        raise ModelError(f"{chat_model.spec}: DRO needs a transformers model")
    out.mkdir(parents=True, exist_ok=True)
    write_run_info(out, config_to_dict(config), "dro")
    with ModelPool() as pool:
        judge = load_judge(config.judge, pool)
        labels = anchor_labels(chat_model, judge, anchors, config, out)
        prompts = anchors["harmful"] + anchors["harmless"]
        harmful = [True] * len(anchors["harmful"]) + [False] * len(anchors["harmless"])
        states, refused, harmful_labels = [], [], []
        for condition, prefix in conditions(init_text, context).items():
            states.append(representations(chat_model, prompts, prefix, config, f"representations ({condition})"))
            refused += labels[condition]["harmful"] + labels[condition]["harmless"]
            harmful_labels += harmful
        estimate = estimate_directions(torch.cat(states), refused, harmful_labels, config.pca_components, config.seed)
        init, init_ids = initial_embeddings(chat_model, init_text)
        untied = ("output_dir", "evaluate_anchors", "generation_batch_size")  # no influence on the trained prompt
        key = _fingerprint(
            chat_model.identity, anchors, {k: v for k, v in config_to_dict(config).items() if k not in untied}
        )
        soft, log = train_soft_prompt(
            chat_model, prompts, harmful, estimate, init, config, checkpoint=out / CHECKPOINT, key=key
        )
        meta = {
            "method": "dro (arXiv 2401.18018)",
            "base_model": config.model,
            "base_identity": chat_model.identity,
            "init_prompt": init_text,
            "init_token_ids": init_ids,
            "init_tokenization_matches_text": _same_tokens(chat_model, init_ids, init_text),
            "context": context,
            "use_with_condition": context_condition(context),
            "layer": config.layer,
            "pca_components": config.pca_components,
        }
        SoftPrompt(soft).save(out, meta)
        report: dict[str, Any] = {
            "model": config.model,
            "init_prompt": init_text,
            "use_with_condition": context_condition(context) or "the turns in soft_prompt.json's 'context'",
            "num_virtual_tokens": len(init_ids),
            "anchors": {kind: len(anchors[kind]) for kind in KINDS},
            "estimate": {
                "explained_variance": estimate.explained_variance,
                "refused_answers": f"{sum(refused)} of {len(refused)}",
                "refusal_classifier_accuracy": round(estimate.refusal_accuracy, 4),
                "harmfulness_classifier_accuracy": round(estimate.harmful_accuracy, 4),
            },
            "loss": {"first": log[0] if log else None, "last": log[-1] if log else None, "curve": log},
            "anchor_refusal_rates": {
                "note": "percent of the anchor (training) requests refused, judged by " + config.judge,
                "unknown_labels": _unknown_labels(out),
                "no_system_prompt": _rates(labels["none"]),
                "written_prompt": _rates(labels["written"]),
            },
        }
        if config.evaluate_anchors:
            learnt = _rates(_learnt_flags(chat_model, judge, anchors, config))
            report["anchor_refusal_rates"]["learnt_prompt"] = learnt
            _warn_if_harmful_refusal_fell(report["anchor_refusal_rates"]["written_prompt"], learnt, config)
    atomic_write_json(out / REPORT, report)
    (out / CHECKPOINT).unlink(missing_ok=True)
    return report


def _warn_if_harmful_refusal_fell(written: dict[str, float], learnt: dict[str, float], config: DROConfig) -> None:
    """The objective raises harmful anchors' refusal; a learnt prompt that refuses fewer of its own harmful anchors
    than the written one failed on its training set and will not keep harmful refusal elsewhere either."""
    if learnt["harmful_refusal"] < written["harmful_refusal"]:
        remedies = "another seed or more harmful anchors" + ("" if config.balance_classes else ", or balance_classes")
        logger.warning(
            "the learnt prompt refuses %.1f%% of the harmful anchors, the written one %.1f%%: DRO failed on its own "
            "training requests; try %s",
            learnt["harmful_refusal"],
            written["harmful_refusal"],
            remedies,
        )


def _unknown_labels(out: Path) -> int:
    """How many judged anchor answers the judge could not label (counted as not refused)."""
    rows = json.loads(read_text_strict(out / ANCHORS))["rows"] if (out / ANCHORS).is_file() else []
    return sum(row["label"] == "unknown" for row in rows)


def _same_tokens(chat_model: Any, init_ids: list[int], init_text: str) -> bool:
    """Whether the soft path with the written prompt's ids is token for token the written prompt's rendering."""
    conversation = [{"role": "user", "content": "Hello"}]
    text_ids = chat_model.prompt_ids(with_condition(["Hello"], [{"role": "system", "content": init_text}]))[0]
    first_id = chat_model.hf_model.get_input_embeddings().num_embeddings
    soft_ids = soft_prompt_ids(chat_model.hf_tokenizer, [conversation], first_id, len(init_ids))[0]
    return [init_ids[i - first_id] if i >= first_id else i for i in soft_ids] == text_ids


def _learnt_flags(chat_model: Any, judge: Any, anchors, config: DROConfig) -> dict[str, list[bool]]:
    """The anchors answered behind the saved soft prompt (loaded from the output folder, as any stage would)."""
    from evoalign.models.hf import HFChatModel

    learnt = HFChatModel(
        chat_model.path,
        spec=chat_model.spec,
        batch_size=config.generation_batch_size,
        soft_prompt=config.output_dir,
        model=chat_model.hf_model,
        tokenizer=chat_model.hf_tokenizer,
    )
    context = written_prompt(config.init_prompt)[1]  # the example turns stay behind the learnt prompt
    try:
        found = {}
        for kind in KINDS:
            _, labels = judge_answers(learnt, judge, anchors[kind], context, config, f"learnt {kind}")
            found[kind] = [is_refusing(label) for label in labels]
        return found
    finally:
        learnt.soft_prompt.detach()


def main(argv: list[str] | None = None) -> int:
    config = parse_config(DROConfig, argv, prog="recipes/dro.py")
    report = run_dro(config)
    rates = report["anchor_refusal_rates"]
    for name in ("no_system_prompt", "written_prompt", "learnt_prompt"):
        if name in rates:
            found = rates[name]
            print(
                f"{name}: harmful refusal {found['harmful_refusal']}%, harmless refusal {found['harmless_refusal']}%"
            )
    first, last = report["loss"]["first"], report["loss"]["last"]
    if first and last:
        print(f"loss {first['loss']:.4f} -> {last['loss']:.4f}; soft prompt -> {config.output_dir}")
    print(f"use it as {{spec: ..., soft_prompt: {config.output_dir}}} with condition {report['use_with_condition']}")
    return 0
