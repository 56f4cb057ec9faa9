"""Every benchmark runs (tiny sizes, seconds each), so none can rot unnoticed: arch_speed.py had
crashed since the tracks became objects of the videos (its fake video had none). The figures are
the benchmarks' own business (docs/performance.md); here only that each finishes and prints them."""

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")

SMOKE = {  # script -> tiny arguments, and a word its last lines must show
    "arch_speed.py": (["--steps", "1", "--frames", "200"], "authors / 0.1"),
    "ddp_throughput.py": (["--videos", "2", "--frames", "200", "--dims", "16", "--epochs", "1", "--batch-size", "8"],
                          "ratio"),
    "detect_quality.py": (["--frames", "1", "--blobs", "4"], "default"),
    "detect_speed.py": (["--frames", "4", "--batch", "2"], "GFLOP"),
    "extract_speed.py": (["--seconds", "1", "--size", "160x120"], "real-time factor"),
    "finetune_speed.py": (["--images", "8", "--steps", "1"], "images/s"),
    "gpu_extract.py": (["--device", "cpu", "--dtype", "fp32", "--frames", "8", "--batch-size", "4",
                        "--audio-seconds", "1"], "real-time factor"),
    "infer_speed.py": (["--frames", "500", "--d-model", "16", "--layers", "1", "--dims", "16", "--batch-size", "32",
                        "--loop-frames", "200"], "ratio"),
    "slurm_array.py": (["--clips", "2", "--seconds", "1", "--tasks", "2"], "speed-up"),
    "smooth_score_scale.py": (["--videos", "3", "--frames", "3000"], "score"),
    "smoothing_by_task.py": (["--videos", "2", "--epochs", "1"], "k=7"),
    "startup.py": (["--repeat", "1"], "ratio"),
    "train_memory.py": (["--frames", "2000", "--videos", "4", "--dims", "16", "--steps", "2", "--batch-size", "4"],
                        "matmul"),
    "multitask_speed.py": (["--steps", "1", "--frames", "200", "--dims", "32"], "multi-task / single-task"),
    "multitask_transfer.py": (["--videos", "2", "--epochs", "1"], "P_MTL"),
    # gpu_check.py: tests/test_gpu_check.py runs it whole (--device cpu --quick)
}


def test_every_benchmark_has_a_smoke_run():
    scripts = {f for f in os.listdir(HERE) if f.endswith(".py")} - {"gpu_check.py"}
    assert scripts == set(SMOKE), scripts ^ set(SMOKE)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMOKE))
def test_the_benchmark_runs(script, tmp_path):
    if script == "slurm_array.py" and (os.geteuid() != 0 or not shutil.which("slurmctld")):
        pytest.skip("the local Slurm needs root and slurmctld (.ci/run installs it)")
    args, word = SMOKE[script]
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run([sys.executable, os.path.join(HERE, script), *args], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert word in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-1500:]
    if script == "slurm_array.py":  # its cluster is gone before tests/test_slurm.py starts its own
        import time

        for _ in range(60):
            if not subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).stdout:
                break
            time.sleep(0.5)
