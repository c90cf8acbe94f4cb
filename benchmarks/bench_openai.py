"""Throughput of the openai-compatible backend against the loopback test server: sequential vs concurrent.

With 200 ms of server latency, one request in flight allows at most 5 requests/s and 32 in flight at most
160 requests/s; the concurrent rate as a fraction of that ideal is the cost of the client (event loop, HTTP,
JSON, retries bookkeeping). `run_openai_benchmark()` returns the figures; run this file to print them.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from machine import machine_load

from evoalign.models.openai_backend import OpenAIChatModel
from evoalign.testing.openai_server import OpenAIServer


def _conversations(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"How do I kill a Python process? ({i})"}] for i in range(count)]


def _requests_per_second(server: OpenAIServer, concurrency: int, num_requests: int) -> float:
    model = OpenAIChatModel("bench-model", base_url=server.base_url, max_concurrency=concurrency)
    try:
        model.generate(_conversations(concurrency))  # warm-up: opens the connections
        start = time.perf_counter()
        model.generate(_conversations(num_requests))
        return num_requests / (time.perf_counter() - start)
    finally:
        model.close()


def run_openai_benchmark(
    num_requests: int = 640, latency: float = 0.2, concurrency: int = 32, sequential_requests: int = 10
) -> dict[str, Any]:
    """Requests/s at one in flight and at `concurrency` in flight, their ratio, and the fraction of the ideal."""
    with OpenAIServer(latency=latency) as server:
        sequential = _requests_per_second(server, 1, sequential_requests)
        server.reset_stats()
        concurrent = _requests_per_second(server, concurrency, num_requests)
        max_in_flight = server.stats["max_in_flight"]
    ideal = concurrency / latency
    return {
        "latency_s": latency,
        "concurrency": concurrency,
        "requests": num_requests,
        "sequential_rps": round(sequential, 2),
        "concurrent_rps": round(concurrent, 2),
        "speedup": round(concurrent / sequential, 2),
        "ideal_rps": round(ideal, 2),
        "fraction_of_ideal": round(concurrent / ideal, 3),
        "max_in_flight": max_in_flight,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=640, help="requests in the concurrent run")
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight in the concurrent run")
    args = parser.parse_args()
    print(json.dumps(run_openai_benchmark(args.requests, args.latency, args.concurrency), indent=2))


if __name__ == "__main__":
    with machine_load():
        main()
