"""Loading the bundled SmolLM2-135M-Instruct: ours vs transformers' GGUF loader, side by side in one run.

Ours is `load_model('smollm2')` once the GGUF file has been converted (the first use converts it into a cached
safetensors folder); the baseline loads the same GGUF file with `from_pretrained(..., gguf_file=...)`, which
de-quantizes every tensor on each load. Each load runs in a fresh Python process (imports included), best of
`--repeats`; the target is a load under 2 s on an idle 2-core CPU.

    python benchmarks/bundled_model.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from machine import machine_load

OURS = "from evoalign.models import load_model; load_model('smollm2')"
BASELINE = (
    "from transformers import AutoModelForCausalLM, AutoTokenizer; from evoalign.models.bundled import gguf_path; "
    "p = gguf_path(); AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name); "
    "AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name)"
)


def seconds(code: str) -> float:
    """Wall seconds of `code` in a fresh process, timed inside it (from just before the first import)."""
    timed = f"import time; start = time.perf_counter(); {code}; print(time.perf_counter() - start)"
    out = subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-c", OURS], check=True, capture_output=True)  # convert once if needed
    ours = min(seconds(OURS) for _ in range(args.repeats))
    baseline = min(seconds(BASELINE) for _ in range(args.repeats))
    print(f"load_model('smollm2') (converted folder): {ours:.2f} s")
    print(f"GGUF loaded by transformers          : {baseline:.2f} s")
    print(f"ratio                                : {baseline / ours:.1f}x")
    print(json.dumps({"ours_s": round(ours, 2), "baseline_s": round(baseline, 2), "ratio": round(baseline / ours, 1)}))


if __name__ == "__main__":
    with machine_load():
        main()
