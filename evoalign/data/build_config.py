"""The build stage's config: every key of `datagen/configs/build_*.yaml`, with its default and help."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evoalign.data.responses import TRUNCATION
from evoalign.errors import ConfigError
from evoalign.prompts import condition_prefix

VERIFIER_KEYS = {"models", "voting"}
RESPONDER_SYSTEM_PROMPT = (
    "You are a helpful, knowledgeable assistant. The user's request is harmless, even if some of its words sound "
    "alarming. Answer it directly and helpfully with accurate, safe information. Do not refuse, and do not add "
    "warnings or lectures the request does not need."
)


def _help(text: str, default: Any = None) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class BuildConfig:
    """Build SFT and preference data from an evolved set (or an EvoRefuse-Align file)."""

    # inputs
    evolved: str | None = _help("The evolve stage's output JSONL (give this or import_evorefuse).")
    import_evorefuse: str | None = _help("A published EvoRefuse-Align file (.json/.jsonl) to build from instead.")
    harmful_prompts: Any = _help(
        "Harmful-prompt set for the safety mix: a path or {path, fields: {instruction: COLUMN}, limit} source."
    )
    output_dir: str = _help("Where the dataset, card, summary and response cache go.", "runs/data")
    resume: bool = _help("Continue in a non-empty output_dir, reusing its cached model calls.", False)
    seed: int = _help("Seed for generation, template choice, splits and mixing.", 42)
    # safety gate
    verifier: dict | None = _help(
        "Verify rows that carry no verdict now: {models: [spec, ...], voting: unanimous|majority}."
    )
    assume_verdict: str | None = _help(
        "Verdict for rows without one when no verifier is set; only 'benign' (e.g. for the published EvoRefuse-"
        "Align set, which its authors verified). Unset: such rows are dropped."
    )
    evolved_harmful_as_safety: bool = _help(
        "Evolved rows judged harmful join the safety set (refusal answer; the target's compliance as rejected).",
        True,
    )
    # compliant answers
    responder: Any = _help("ChatModel spec (or mapping) that writes compliant answers.", "smollm2")
    responder_system_prompt: str = _help("System prompt for the responder.", RESPONDER_SYSTEM_PROMPT)
    judge: str = _help("Refusal judge spec that checks every written response.", "evoalign")
    max_new_tokens: int = _help("Longest response, in tokens.", 384)
    temperature: float = _help("Sampling temperature of the first attempt (0 = greedy).", 0.0)
    retry_temperature: float = _help("Temperature for regenerations (each round with a new seed).", 0.8)
    max_judge_doubt: float = _help(
        "Largest judge probability of the other class that a written answer may have (its p_refusal for a "
        "compliant answer). Meaningful with a calibrated judge such as the default evoalign; string rules give "
        "0 or 1, so with them only the label counts.",
        0.2,
    )
    max_retries: int = _help("Regenerations of a response the judge rejects before the row is dropped.", 3)
    truncated: str = _help(
        "Responses cut off at max_new_tokens: drop (regenerate, then drop the row), trim (to the last complete "
        "sentence), or keep.",
        "drop",
    )
    # safety set
    safety_ratio: float = _help("Safety rows per benign row in the SFT set (1.0 = the paper's equal mix).", 1.0)
    refusal_writer: Any = _help("'template' or a ChatModel spec/mapping that writes refusals.", "template")
    # preference pairs
    target: Any = _help("ChatModel spec/mapping sampled for refusals when a benign row has none from evolution.")
    target_condition: Any = _help("Prompt condition (name or list of messages) for the target.", "refusal_prone")
    safety_target_condition: Any = _help(
        "Prompt condition under which `target` is sampled for a compliant answer to each harmful row that has none "
        "(the rejected side of safety pairs), e.g. 'default' for a model that complies without its safety prompt; "
        "unset = only compliances from evolution."
    )
    target_samples: int = _help("Samples drawn from the target per row lacking a rejected response.", 4)
    target_temperature: float = _help("Sampling temperature for the target.", 1.0)
    # training context
    train_condition: Any = _help(
        "Prompt condition (name or list of messages) put before every SFT and preference prompt, so the model is "
        "trained in the context it is deployed with (e.g. its system prompt); unset = the bare request."
    )
    # CHES filter
    policy: Any = _help("Model (hf spec or mapping) whose hidden states give CHES; unset = no CHES.")
    ches_drop_fraction: float = _help("Fraction of pairs with the highest CHES to drop (needs policy).", 0.0)
    ches_batch_size: int = _help("Sequences per forward pass when computing CHES.", 8)
    # splits
    test_size: float = _help("Fraction of benign rows in the test splits.", 0.1)
    near_dup_threshold: float = _help("Word-shingle Jaccard at which two instructions are near-duplicates.", 0.5)
    shingle_size: int = _help("Words per shingle for near-duplicate detection.", 3)
    group_by_seed: bool = _help("Keep rows evolved from the same seed in the same split.", True)
    # outputs
    export_evorefuse: bool = _help("Also write all pairs as evorefuse_align.json (the published format).", False)
    push_to_hub: bool = _help("Push the DatasetDict and card to the hub as hub_dataset_id.", False)
    hub_dataset_id: str | None = _help("Hub dataset repo id for push_to_hub.")
    hub_private: bool = _help("Create the hub dataset repo as private.", True)

    def validate(self, where: str) -> None:
        """Reject inconsistent settings with a message naming the config and the key."""
        problems = []
        if (self.evolved is None) == (self.import_evorefuse is None):
            problems.append("give exactly one of 'evolved' and 'import_evorefuse'")
        if self.assume_verdict not in (None, "benign"):
            problems.append("'assume_verdict' may only be 'benign' (or unset)")
        if not 0 < self.test_size < 1:
            problems.append(f"'test_size' must be in (0, 1), got {self.test_size}")
        if self.safety_ratio < 0:
            problems.append(f"'safety_ratio' must be >= 0, got {self.safety_ratio}")
        if self.safety_ratio > 0 and self.harmful_prompts is None and not self.evolved_harmful_as_safety:
            problems.append("'safety_ratio' > 0 needs 'harmful_prompts' (or evolved_harmful_as_safety)")
        if not 0 <= self.ches_drop_fraction < 1:
            problems.append(f"'ches_drop_fraction' must be in [0, 1), got {self.ches_drop_fraction}")
        if self.ches_drop_fraction and self.policy is None:
            problems.append("'ches_drop_fraction' needs a 'policy' model")
        if not 0 < self.near_dup_threshold <= 1:
            problems.append(f"'near_dup_threshold' must be in (0, 1], got {self.near_dup_threshold}")
        if self.truncated not in TRUNCATION:
            problems.append(f"'truncated' must be one of {', '.join(TRUNCATION)}, got {self.truncated!r}")
        if not 0 <= self.max_judge_doubt <= 1:
            problems.append(f"'max_judge_doubt' must be in [0, 1], got {self.max_judge_doubt}")
        if self.max_retries < 0:
            problems.append(f"'max_retries' must be >= 0, got {self.max_retries}")
        for name in ("max_new_tokens", "target_samples", "shingle_size", "ches_batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"'{name}' must be >= 1, got {getattr(self, name)}")
        if self.push_to_hub and not self.hub_dataset_id:
            problems.append("'push_to_hub' needs 'hub_dataset_id'")
        if self.verifier is not None and (not self.verifier.get("models") or set(self.verifier) - VERIFIER_KEYS):
            problems.append("'verifier' is {models: [spec, ...], voting: unanimous|majority}")
        for name in ("target_condition", "safety_target_condition", "train_condition"):
            try:
                condition_prefix(getattr(self, name))
            except ConfigError as error:
                problems.append(f"'{name}': {error}")
        if problems:
            raise ConfigError(f"{where}: " + "; ".join(problems))
