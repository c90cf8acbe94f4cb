"""Training-free refusal edits, chosen on validation (evoalign/steer/pipeline.py):

- `method: ablation`: false-refusal direction ablation (Wang et al., ICLR 2025), saved as a weight edit, an ordinary
  model folder (`hf:<output_dir>`);
- `method: probe`: probe-conditioned steering (SCANS-style), saved as `steering.safetensors`, used as
  `{spec: <the model>, steering: <output_dir>/steering.safetensors}`.

    python recipes/ablate.py --config recipes/smollm2-135m-instruct/ablate/config_refusal_prone.yaml
    python recipes/ablate.py --config recipes/smollm2-135m-instruct/ablate/config_refusal_prone.yaml --method probe \
        --output_dir runs/probe-smollm2-refusal-prone
    python recipes/ablate.py --config recipes/llama-3.1-8b-instruct/ablate/config.yaml

`ablation.json` holds the validation rates of the unedited model and of every candidate, and the one the rule chose.
A rerun resumes from the validation runs already done.
"""

from __future__ import annotations

import sys

from evoalign.config import parse_config
from evoalign.errors import run_main
from evoalign.steer.config import AblationConfig
from evoalign.steer.pipeline import run_ablation


def main(argv: list[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(run_main(main))
