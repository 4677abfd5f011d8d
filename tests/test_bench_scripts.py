"""The GPU benchmark can't run its real shape here; its code path is smoke-tested at a tiny shape."""

import json
import subprocess
import sys


def test_gpu_bench_runs_at_tiny_shape_on_cpu():
    out = subprocess.run(
        [
            sys.executable,
            "bench/bench_gpu.py",
            "--tiny",
            "--device",
            "cpu",
            "--new-tokens",
            "3",
            "--candidates",
            "3",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(out.stdout[out.stdout.index("{") :])
    assert report["candidates"] == 3 and report["batched_ms"] > 0 and report["sequential_ms"] > 0
    assert "batched_static_cache_ms" in report or "batched_static_cache_error" in report
