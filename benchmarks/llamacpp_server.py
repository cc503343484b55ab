"""llama.cpp's own HTTP server, started through ``xllamacpp``: the baseline of bench_serving.py.

Constructing ``xllamacpp.Server`` loads the model and starts llama.cpp's HTTP server (OpenAI
``/v1/chat/completions``, ``/health``) on a background thread. This process then waits until its
stdin closes (the benchmark closes it, or dies) or it is terminated.

    python benchmarks/llamacpp_server.py --model M.gguf --port 8081 --slots 4 --context-size 2048 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys

import xllamacpp


def params(args: argparse.Namespace) -> xllamacpp.CommonParams:
    """The same llama.cpp settings aimi's llamacpp engine uses (minus its private API key)."""
    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.n_parallel = args.slots
    p.n_ctx = args.context_size * args.slots
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.hostnames = [args.host]
    p.port = args.port
    p.verbosity = -1
    return p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="path to a .gguf file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slots", type=int, default=4, help="parallel slots (n_parallel)")
    parser.add_argument("--context-size", type=int, default=2048, help="context per slot, in tokens")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (generation and batch)")
    args = parser.parse_args()
    server = xllamacpp.Server(params(args))
    print(f"llama.cpp server listening at {server.listening_address}", file=sys.stderr, flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or goes away)
    os._exit(0)  # skip interpreter teardown of the native server: nothing to flush


if __name__ == "__main__":
    main()
