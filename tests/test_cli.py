import importlib.util
import subprocess
import sys

import pytest
from conftest import abaw

from abawtools.cli import COMMANDS

LIGHT = ["smooth", "score", "align", "window"]


def modules_after(code):
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_help_lists_all_nine_commands():
    out = abaw("--help").stdout.decode()
    for name in COMMANDS:
        assert name in out
    assert len(COMMANDS) == 9 and "finetune" in COMMANDS


@pytest.mark.parametrize("argv", [[], ["smooth"], ["score"], ["align"], ["window"]])
def test_light_paths_never_import_torch(argv):
    code = (
        "import sys\nfrom abawtools.cli import main\n"
        f"sys.argv=['abaw', *{argv!r}, '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    mods = modules_after(code)
    assert "torch" not in mods and "transformers" not in mods, argv
    assert "cv2" not in mods and "av" not in mods


@pytest.mark.parametrize("name", [n for n in COMMANDS if importlib.util.find_spec(f"abawtools.commands.{COMMANDS[n]}")])
def test_every_command_has_help_with_an_example(name):
    out = abaw(name, "--help").stdout.decode()
    assert "Example" in out and f"abaw {name}" in out


def test_python_dash_m_and_version():
    assert b"abawtools" in abaw("--version").stdout
