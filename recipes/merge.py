"""Merge a LoRA adapter into its base model and save a full model (e.g. to start DPO from SFT).

    python recipes/merge.py --adapter_path runs/llama-sft --output_dir runs/llama-sft-merged

The base defaults to the one recorded in the adapter; the tokenizer saved with the adapter is kept.
"""

from __future__ import annotations

import sys

from evoalign.config import ConfigParser
from evoalign.errors import run_main
from evoalign.train.configs import MergeArguments
from evoalign.train.merge import merge_adapter


def main(args: MergeArguments) -> str:
    """Merge and save; prints and returns the output folder."""
    output = merge_adapter(
        args.adapter_path,
        args.output_dir,
        base_model=args.base_model,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
    )
    print(output)
    return str(output)


if __name__ == "__main__":
    sys.exit(run_main(lambda argv: main(*ConfigParser((MergeArguments,)).parse_args_and_config(argv))))
