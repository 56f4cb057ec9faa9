"""benchmarks/gpu_check.py, the one command for a GPU node, runs its whole plumbing on the CPU in
CI (`--device cpu --quick`), so it cannot rot between the rare sessions with a GPU."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # a subprocess that runs pytest -m gpu and every figure

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def test_gpu_check_quick_on_the_cpu_prints_and_writes_the_table(tmp_path):
    out = tmp_path / "gpu-check.md"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"), "--device", "cpu",
                           "--quick", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    assert table == proc.stdout
    assert "pytest -m gpu: 7 passed, 0 failed, 2 skipped" in table  # fp16 and NCCL are GPU-only
    for row in ("bf16 matmul", "BlazeFace", "extraction from a cropped_aligned folder", "WavLM", "window model training",
                "window model inference", "fine-tuning", "DataLoader workers"):
        assert row in table, row
    assert "nan" not in table.lower()
