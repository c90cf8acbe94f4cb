"""The dataset card (README.md) written next to the build's files: sources, counts, filters, ledger, config.

Its Hub metadata (huggingface_hub's `DatasetCardData`) declares two configs, `sft` (train_sft/test_sft) and `prefs`
(train_prefs/test_prefs), since the two kinds of split have different columns; `push_to_hub` later points them at
the uploaded parquet files. The card itself is a `DatasetCard`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import yaml

from evoalign.build.output import PREF_SPLITS, SFT_SPLITS
from evoalign.build.summary import Ledger
from evoalign.secrets import scrub_secrets

_TAGS = ["evoalign", "over-refusal", "safety", "sft", "dpo"]
_CONFIGS = [
    {"config_name": "sft", "data_files": [{"split": s, "path": f"{s}.jsonl"} for s in SFT_SPLITS]},
    {"config_name": "prefs", "data_files": [{"split": s, "path": f"{s}.jsonl"} for s in PREF_SPLITS]},
]

_SCHEMA = """\
| file | columns |
|---|---|
| `train_sft.jsonl`, `test_sft.jsonl` | `id`, `kind` (benign/safety), `source`, `category` (a safety row's harm \
category, or null), `prompt` [user message], `completion` [assistant message] |
| `train_prefs.jsonl`, `test_prefs.jsonl` | `id`, `kind`, `source`, `prompt`, `chosen` [assistant message], \
`rejected` [assistant message], `ches` (float or null) |
| `dataset/` | the same four splits as a `DatasetDict` (`datasets.load_from_disk`) |
| `summary.json` | rows kept and dropped at each step, and the split counts |
| `run_info.json` | the resolved config, package versions and command line |
| `evorefuse_align.json` | (with `export_evorefuse`) all pairs in the published EvoRefuse-Align format |

Messages are `{"role", "content"}` dicts, so TRL applies each model's own chat template. `benign` rows pair an
instruction the harmfulness verifier judged benign with a compliant answer (chosen) and a refusal the target
actually gave (rejected); `safety` rows pair a harmful instruction with a refusal (chosen) and, in pairs, a
compliant answer (rejected)."""


def _counts(splits: Mapping[str, list[dict[str, Any]]]) -> str:
    lines = ["| split | rows | benign | safety |", "|---|---|---|---|"]
    for name, rows in splits.items():
        kinds = Counter(row["kind"] for row in rows)
        lines.append(f"| {name} | {len(rows)} | {kinds['benign']} | {kinds['safety']} |")
    return "\n".join(lines)


def _filters(config: Mapping[str, Any]) -> str:
    ches = (
        f"CHES under `{config['policy']}`; the {config['ches_drop_fraction']:.0%} most similar pairs dropped"
        if config.get("policy")
        else "CHES not computed"
    )
    return "\n".join(
        [
            "- safety gate: only instructions whose verifier verdict is `benign` get a compliant answer;",
            f"- refusal judge `{config['judge']}` on every written response: answers must be `compliance`, "
            f"refusals `refusal`, with at most {config['max_judge_doubt']} probability of the other class; "
            f"{config['max_retries']} regenerations, then the row is dropped"
            + f"; responses cut off at {config['max_new_tokens']} tokens: {config['truncated']};",
            f"- exact duplicates removed; near-duplicates (word {config['shingle_size']}-shingle Jaccard >= "
            f"{config['near_dup_threshold']}) kept in one split"
            + (", as are rows evolved from one seed;" if config["group_by_seed"] else ";"),
            f"- safety mix: {config['safety_ratio']} safety rows per benign row in each SFT split "
            "(preference splits: up to that ratio, as far as safety pairs exist);",
            f"- {ches}.",
        ]
    )


def dataset_card(config: Mapping[str, Any], ledger: Ledger, splits: Mapping[str, list[dict[str, Any]]]) -> str:
    """The README.md text for a finished build (`config` as given; secret-looking values are masked in the dump)."""
    sources = [
        f"- {label}: `{config[key]}`"
        for key, label in (
            ("evolved", "evolved set"),
            ("import_evorefuse", "imported EvoRefuse-Align file"),
            ("harmful_prompts", "harmful prompts"),
            ("responder", "responder"),
            ("refusal_writer", "refusal writer"),
            ("target", "target sampled for missing refusals"),
        )
        if config.get(key) is not None
    ]
    from huggingface_hub import DatasetCard, DatasetCardData

    parts = [
        "# evoalign over-refusal alignment data",
        "Built by `evoalign build` (EvoRefuse pseudo-malicious instructions with compliant answers, mixed with a "
        "safety set so that training against over-refusal keeps refusals of harmful requests).",
        "## Files and schema",
        _SCHEMA,
        "## Sources",
        "\n".join(sources),
        "## Counts",
        _counts(splits),
        "## Filters applied",
        _filters(config),
        "## Rows kept and dropped at each step",
        f"```\n{ledger.table()}\n```",
        "## Config",
        f"```yaml\n{yaml.safe_dump(scrub_secrets(dict(config)), sort_keys=False, allow_unicode=True)}```",
    ]
    header = DatasetCardData(tags=_TAGS, configs=_CONFIGS).to_yaml()
    return str(DatasetCard(f"---\n{header}\n---\n\n" + "\n\n".join(parts) + "\n"))
