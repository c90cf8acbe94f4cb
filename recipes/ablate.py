"""False-refusal direction ablation (Wang et al., ICLR 2025): a training-free weight edit, chosen on validation.

    python recipes/ablate.py --config recipes/smollm2-135m-instruct/ablate/config_refusal_prone.yaml
    python recipes/ablate.py --config recipes/llama-3.1-8b-instruct/ablate/config.yaml

Writes an ordinary model folder (load it as `hf:<output_dir>`) and `ablation.json`: the validation rates of the
unedited model and of every candidate (layer, position, orthogonalisation strength), and the one the rule chose.
A rerun resumes from the candidates already measured.
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
        print(
            f"chosen: layer {chosen['layer']}, position {chosen['position']}, strength {chosen['strength']}: benign "
            f"{chosen['benign_refusal']:.1f}%, harmful {chosen['harmful_refusal']:.1f}% -> {config.output_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
