"""The house: the README is a front door (short, every link resolves), docs/ has one page per
command, and every command's --help points to its page."""

import os
import re

import pytest
from conftest import invoke

from abawtools.cli import COMMANDS

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _markdown_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__")) and d not in ("build",)]
        for f in files:
            if f.endswith(".md"):
                yield os.path.join(folder, f)


def test_readme_is_a_front_door():
    lines = open(os.path.join(ROOT, "README.md")).read().splitlines()
    assert len(lines) <= 200, len(lines)


def test_every_relative_link_resolves():
    broken = []
    for path in _markdown_files():
        for m in re.finditer(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", open(path, encoding="utf-8").read()):
            target = m.group(1)
            if re.match(r"[a-z]+:", target):
                continue
            if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(path), target))):
                broken.append((os.path.relpath(path, ROOT), target))
    assert not broken, broken


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_its_page_and_help_points_to_it(name):
    page = os.path.join(ROOT, "docs", "commands", f"{name}.md")
    assert os.path.exists(page) and f"abaw {name}" in open(page).read()
    result = invoke(name, "--help")
    assert f"docs/commands/{name}.md" in result.stdout and "Example" in result.stdout
