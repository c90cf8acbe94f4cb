"""Build SFT and preference data from an evolved set: `python datagen/build.py --config datagen/configs/build_offline.yaml`.

Same as `evoalign build`; see evoalign/build/pipeline.py for the steps and docs/data.md for the files.
"""

import sys

from evoalign.build.cli import main
from evoalign.errors import run_main

if __name__ == "__main__":
    sys.exit(run_main(main))
