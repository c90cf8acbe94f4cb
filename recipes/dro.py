"""DRO: learn a safety prompt as soft embeddings in front of a frozen model (Zheng et al. 2024, arXiv 2401.18018).

    python recipes/dro.py --config recipes/smollm2-135m-instruct/dro/config.yaml
    python recipes/dro.py --config recipes/llama-3.1-8b-instruct/dro/config.yaml

The YAML sets defaults and `--key value` flags override them (`--help` lists every key). The result goes in front
of the model in any stage as an hf model option: `{spec: smollm2, soft_prompt: runs/dro-smollm2}`. A rerun
resumes from the judged anchor answers and the last finished epoch; a finished run (`dro.json`) is not redone.
"""

from __future__ import annotations

import sys

from evoalign.errors import run_main
from evoalign.train.dro import main

if __name__ == "__main__":
    sys.exit(run_main(main))
