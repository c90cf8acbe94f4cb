"""Eval stage script: `python eval/run.py --config eval/configs/smollm2_offline.yaml` (same as `evoalign eval`)."""

import sys

from evoalign.errors import run_main
from evoalign.eval.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
