"""Build `smollm2-guarded`, the learnt over-refusing base: SmolLM2 safety-tuned by our own SFT recipe.

    python recipes/guarded_base.py --config recipes/smollm2-135m-instruct/guarded/config.yaml

Writes the SFT data (the model's own refusals to harmful requests, its own answers to ordinary instructions), trains
a LoRA adapter with the SmolLM2 SFT recipe, merges it and saves a plain model folder in evoalign's cache, where the
`smollm2-guarded` spec loads it. A rerun skips the steps already done (see evoalign/train/guarded.py).
"""

from __future__ import annotations

import sys

from evoalign.errors import run_main
from evoalign.train.guarded import main

if __name__ == "__main__":
    sys.exit(run_main(main))
