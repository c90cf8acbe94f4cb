"""Evolve pseudo-malicious instructions from seeds (EvoRefuse search with evoalign's improvements).

    python datagen/evolve.py --config datagen/configs/offline.yaml
    accelerate launch --num_processes 2 datagen/evolve.py --config datagen/configs/paper.yaml --resume

See docs/evolve.md for the config keys and output columns; `--help` lists every key.
"""

import sys

from evoalign.errors import run_main
from evoalign.evolve.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
