"""The build stage's config: every key of `datagen/configs/build_*.yaml`, with its default and help."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evoalign.build.responses import TRUNCATION
from evoalign.build.safety import check_harmful_prompts
from evoalign.errors import ConfigError
from evoalign.judges.loading import check_judge
from evoalign.judges.verifiers import SPEC_HELP, check_options, check_verifier
from evoalign.labels import BENIGN
from evoalign.models import check_spec
from evoalign.prompts import condition_prefix

RESPONDER_SYSTEM_PROMPT = (
    "You are a helpful, knowledgeable assistant. The user's request is harmless, even if some of its words sound "
    "alarming. Answer it directly and helpfully with accurate, safe information. Do not refuse, and do not add "
    "warnings or lectures the request does not need."
)


@dataclass
class BuildConfig:
    """Build SFT and preference data from an evolved set (or an EvoRefuse-Align file)."""

    # inputs
    evolved: str | None = field(
        default=None, metadata={"help": "The evolve stage's output JSONL (give this or import_evorefuse)."}
    )
    import_evorefuse: str | None = field(
        default=None, metadata={"help": "A published EvoRefuse-Align file (.json/.jsonl) to build from instead."}
    )
    harmful_prompts: Any = field(
        default=None,
        metadata={
            "help": "Harmful-prompt set for the safety mix: a registered benchmark (advbench, or {benchmark: advbench, limit: N} "
            "for its first N prompts), or a source: a path or {path, fields: {instruction: COLUMN}, limit}."
        },
    )
    benchmark_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the public benchmark files for offline machines (advbench/harmful_behaviors.csv, ...); unset: "
            "$EVOALIGN_BENCHMARK_DIR, else the public location."
        },
    )
    output_dir: str = field(
        default="runs/data", metadata={"help": "Where the dataset, card, summary and response cache go."}
    )
    resume: bool = field(
        default=False, metadata={"help": "Continue in a non-empty output_dir, reusing its cached model calls."}
    )
    seed: int = field(default=42, metadata={"help": "Seed for generation, template choice, splits and mixing."})
    # safety gate
    verifier: Any = field(
        default=None,
        metadata={
            "help": SPEC_HELP
            + ", verifying rows that carry no verdict now (unset: such rows need assume_verdict); the build "
            "is always strict: only instructions verified benign get a compliant answer"
        },
    )
    verifier_voting: str = field(
        default="unanimous", metadata={"help": "How the verifier ensemble's votes combine: unanimous or majority."}
    )
    assume_verdict: str | None = field(
        default=None,
        metadata={
            "help": "Verdict for rows without one when no verifier is set; only 'benign' (e.g. for the published EvoRefuse-"
            "Align set, which its authors verified). Unset: such rows are dropped."
        },
    )
    evolved_harmful_as_safety: bool = field(
        default=True,
        metadata={
            "help": "Evolved rows judged harmful join the safety set (refusal answer; the target's compliance as rejected)."
        },
    )
    # compliant answers
    responder: Any = field(
        default="smollm2", metadata={"help": "ChatModel spec (or mapping) that writes compliant answers."}
    )
    responder_system_prompt: str = field(
        default=RESPONDER_SYSTEM_PROMPT, metadata={"help": "System prompt for the responder."}
    )
    judge: str = field(default="evoalign", metadata={"help": "Refusal judge spec that checks every written response."})
    max_new_tokens: int = field(default=384, metadata={"help": "Longest response, in tokens."})
    temperature: float = field(
        default=0.0, metadata={"help": "Sampling temperature of the first attempt (0 = greedy)."}
    )
    retry_temperature: float = field(
        default=0.8, metadata={"help": "Temperature for regenerations (each round with a new seed)."}
    )
    max_judge_doubt: float = field(
        default=0.2,
        metadata={
            "help": "Largest judge probability of the other class that a written answer may have (its p_refusal for a "
            "compliant answer). Meaningful with a calibrated judge such as the default evoalign; string rules give "
            "0 or 1, so with them only the label counts."
        },
    )
    max_retries: int = field(
        default=3, metadata={"help": "Regenerations of a response the judge rejects before the row is dropped."}
    )
    truncated: str = field(
        default="drop",
        metadata={
            "help": "Responses cut off at max_new_tokens: drop (regenerate, then drop the row), trim (to the last complete "
            "sentence), or keep."
        },
    )
    # safety set
    safety_ratio: float = field(
        default=1.0, metadata={"help": "Safety rows per benign row in the SFT set (1.0 = the paper's equal mix)."}
    )
    refusal_writer: Any = field(
        default="template", metadata={"help": "'template' or a ChatModel spec/mapping that writes refusals."}
    )
    # preference pairs
    target: Any = field(
        default=None,
        metadata={"help": "ChatModel spec/mapping sampled for refusals when a benign row has none from evolution."},
    )
    target_condition: Any = field(
        default="refusal_prone", metadata={"help": "Prompt condition (name or list of messages) for the target."}
    )
    safety_target_condition: Any = field(
        default=None,
        metadata={
            "help": "Prompt condition under which `target` is sampled for a compliant answer to each harmful row that has none "
            "(the rejected side of safety pairs), e.g. 'default' for a model that complies without its safety prompt; "
            "unset = only compliances from evolution."
        },
    )
    target_samples: int = field(
        default=4, metadata={"help": "Samples drawn from the target per row lacking a rejected response."}
    )
    target_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature for the target."})
    # training context
    train_condition: Any = field(
        default=None,
        metadata={
            "help": "Prompt condition (name or list of messages) put before every SFT and preference prompt, so the model is "
            "trained in the context it is deployed with (e.g. its system prompt); unset = the bare request."
        },
    )
    # CHES filter
    policy: Any = field(
        default=None, metadata={"help": "Model (hf spec or mapping) whose hidden states give CHES; unset = no CHES."}
    )
    ches_drop_fraction: float = field(
        default=0.0, metadata={"help": "Fraction of pairs with the highest CHES to drop (needs policy)."}
    )
    ches_keep_fraction: float | None = field(
        default=None,
        metadata={
            "help": "The CHES paper's setting: keep only this fraction of pairs, those with the lowest CHES (its "
            "experiment kept about 5%: 0.05); needs policy; excludes ches_drop_fraction."
        },
    )
    ches_batch_size: int = field(default=8, metadata={"help": "Sequences per forward pass when computing CHES."})
    # splits
    test_size: float = field(default=0.1, metadata={"help": "Fraction of benign rows in the test splits."})
    near_dup_threshold: float = field(
        default=0.5, metadata={"help": "Word-shingle Jaccard at which two instructions are near-duplicates."}
    )
    shingle_size: int = field(default=3, metadata={"help": "Words per shingle for near-duplicate detection."})
    group_by_seed: bool = field(
        default=True, metadata={"help": "Keep rows evolved from the same seed in the same split."}
    )
    # outputs
    export_evorefuse: bool = field(
        default=False, metadata={"help": "Also write all pairs as evorefuse_align.json (the published format)."}
    )
    push_to_hub: bool = field(
        default=False, metadata={"help": "Push the DatasetDict and card to the hub as hub_dataset_id."}
    )
    hub_dataset_id: str | None = field(default=None, metadata={"help": "Hub dataset repo id for push_to_hub."})
    hub_private: bool = field(default=True, metadata={"help": "Create the hub dataset repo as private."})

    def validate(self, where: str) -> None:
        """Reject inconsistent settings with a message naming the config and the key."""
        problems = []
        if not self.output_dir:
            problems.append("'output_dir' is required")
        if (self.evolved is None) == (self.import_evorefuse is None):
            problems.append("give exactly one of 'evolved' and 'import_evorefuse'")
        if self.assume_verdict not in (None, BENIGN):
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
        if self.ches_keep_fraction is not None:
            if not 0 < self.ches_keep_fraction <= 1:
                problems.append(f"'ches_keep_fraction' must be in (0, 1], got {self.ches_keep_fraction}")
            if self.ches_drop_fraction:
                problems.append("give one of 'ches_keep_fraction' and 'ches_drop_fraction', not both")
            if self.policy is None:
                problems.append("'ches_keep_fraction' needs a 'policy' model")
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
        try:
            check_options(self.verifier_voting)
        except ConfigError as error:
            problems.append(str(error))
        for name in ("target_condition", "safety_target_condition", "train_condition"):
            try:
                condition_prefix(getattr(self, name))
            except ConfigError as error:
                problems.append(f"'{name}': {error}")
        for name in ("temperature", "retry_temperature", "target_temperature"):
            if getattr(self, name) < 0:
                problems.append(f"'{name}' must be >= 0, got {getattr(self, name)}")
        if problems:
            raise ConfigError(f"{where}: " + "; ".join(problems))
        self._validate_nested(where)

    def _validate_nested(self, where: str) -> None:
        """Model specs, the verifier, the judge and the harmful-prompt set, checked without loading anything."""
        for name in ("responder", "target", "policy", "refusal_writer"):
            value = getattr(self, name)
            if value is not None and not (name == "refusal_writer" and value == "template"):
                check_spec(value, f"{where}: '{name}'")
        check_verifier(self.verifier, f"{where}: 'verifier'", self.verifier_voting)
        check_judge(self.judge, f"{where}: 'judge'")
        if self.harmful_prompts is not None:
            check_harmful_prompts(self.harmful_prompts, f"{where}: 'harmful_prompts'")
