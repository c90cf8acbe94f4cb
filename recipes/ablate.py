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

from evoalign.errors import run_main
from evoalign.steer.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
