"""The command line of the steer stage (`recipes/ablate.py`): parse the config, run the recipe, print the choice."""

from __future__ import annotations

from collections.abc import Sequence

from evoalign.config import parse_config
from evoalign.steer.config import AblationConfig
from evoalign.steer.pipeline import run_ablation


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(AblationConfig, argv, prog="recipes/ablate.py")
    report = run_ablation(config)
    base, chosen = report["base"], report["chosen"]
    print(
        f"base: benign refusal {base['benign_refusal']:.1f}%, harmful refusal {base['harmful_refusal']:.1f}% (validation)"
    )
    if chosen is None:
        print(f"no candidate met the rule ({report['rule']}); nothing saved")
    else:
        knobs = ", ".join(f"{k} {v}" for k, v in chosen.items() if not k.endswith("refusal") and k != "steered")
        saved = f"{config.output_dir}/steering.safetensors" if report["method"] == "probe" else config.output_dir
        print(
            f"chosen: {knobs}: benign {chosen['benign_refusal']:.1f}%, harmful {chosen['harmful_refusal']:.1f}% "
            f"(validation) -> {saved}"
        )
    return 0
