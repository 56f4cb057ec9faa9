"""Start-up of the light commands vs `python -c "import numpy"`, same machine, same run.

    python benchmarks/startup.py [--repeat 5]

Target (issue 2): `abaw smooth --help` and `abaw score --help` within 3x the numpy import, and no
torch import at all (checked with -X importtime).
"""

import argparse
import statistics
import subprocess
import sys
import time


def best_of(cmd, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    py = sys.executable
    base, base_med = best_of([py, "-c", "import numpy"], args.repeat)
    print(f"python -c 'import numpy'       best {base * 1000:6.0f} ms  median {base_med * 1000:6.0f} ms")
    worst = 0.0
    for sub in ("smooth", "score", "align", "window"):
        cmd = [py, "-m", "abawtools", sub, "--help"]
        best, med = best_of(cmd, args.repeat)
        worst = max(worst, best / base)
        imports = subprocess.run([py, "-X", "importtime", *cmd[1:]], capture_output=True, text=True).stderr
        loaded = {line.rsplit("|", 1)[-1].strip() for line in imports.splitlines() if "|" in line}
        heavy = [m for m in ("torch", "transformers", "cv2", "av") if m in loaded]
        print(f"abaw {sub:<7} --help           best {best * 1000:6.0f} ms  median {med * 1000:6.0f} ms  "
              f"ratio {best / base:4.2f}x  heavy imports: {', '.join(heavy) or 'none'}")
    print(f"worst ratio {worst:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
