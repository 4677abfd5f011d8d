"""The GPU benchmark can't run its real shape here; its code path is smoke-tested at a tiny shape."""

import json
import os
import subprocess
import sys


def test_gpu_bench_saves_its_tiny_shape_and_runs_it_on_cpu(tmp_path):
    """``--save`` writes a checkpoint the service's loader reads (``--model``); the eager and static
    modes at one batch size (the compiled mode's code is tests/backends/test_compiled.py's)."""
    bench = [sys.executable, "bench/bench_gpu.py", "--device", "cpu"]
    subprocess.run([*bench, "--tiny", "--save", str(tmp_path)], capture_output=True, timeout=300, check=True)
    argv = ["--model", str(tmp_path), "--new-tokens", "3", "--candidates", "3", "--batches", "3", "--repeats", "1"]
    out = subprocess.run(
        [*bench, *argv, "--modes", "eager,static"], capture_output=True, text=True, timeout=300, check=True
    )
    report = json.loads(out.stdout[out.stdout.index("{") :])
    assert report["candidates"] == 3 and report["eager_3_ms"] > 0 and report["sequential_ms"] > 0
    assert report["static_3_ms"] > 0 and report["speedup_static_vs_eager_3"] > 0


def test_service_bench_runs_small():
    """The service benchmark's two phases on a small load: every submit accepted, the CPU time of
    each component and the one job's overhead measured."""
    argv = ["--clients", "4", "--requests", "16", "--jobs", "2"]
    out = subprocess.run(
        [sys.executable, "bench/bench_service.py", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(out.stdout[out.stdout.index("{") :])
    for kind in ("multipart", "multipart_new_images", "json"):
        submits = report["submit"][kind]
        assert submits["requests"] == 16 and submits["errors"] == 0
        assert submits["p99_ms"] >= submits["p50_ms"] > 0
        cpu = submits["cpu_ms_per_submit"]
        assert set(cpu) == {"api", "postgres", "redis", "s3", "clients"} and cpu["api"] > 0 and cpu["postgres"] > 0
    assert report["one_job"]["jobs"] == 2 and report["one_job"]["total_p50_ms"] > report["one_job"]["overhead_p50_ms"]


def test_attack_bench_runs_at_tiny_llava_shape():
    """bench_attack's 7B code path (CLIP processor built in code, random LLaVA) at a tiny shape."""
    out = subprocess.run(
        [
            sys.executable,
            "bench/bench_attack.py",
            "--shape",
            "llava-tiny",
            "--items",
            "3",
            "--steps",
            "2",
            "--eot-samples",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(out.stdout[out.stdout.index("{") :])
    assert report["items"] == 3 and report["pgd_batched_ms"] > 0 and report["pgd_one_at_a_time_ms"] > 0
    assert report["eot_batched_ms"] > 0 and report["batched_speedup"] > 0


def test_l2_threat_model_bench_runs_small(tmp_path):
    """bench_l2_asr end to end on the bundled models at a tiny budget: every group and goal reported."""
    report = tmp_path / "l2.json"
    argv = ["--items", "2", "--eps", "0.5", "--steps", "1", "--eot-samples", "1", "--num-samples", "4"]
    subprocess.run(
        [sys.executable, "bench/bench_l2_asr.py", *argv, "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env=os.environ | {"PYTHONPATH": "."},
    )
    results = json.loads(report.read_text())
    assert results["items"] == 2 and "robust defended σ=0.25 eot-l2 ε=0.5 targeted" in results["results"]
    assert all(r["n"] == 2 for r in results["results"].values())
    assert {g["goal"] for g in results["goals"]} >= {"defended clean accuracy ≥ 97%", "defended clean abstain ≤ 5%"}
