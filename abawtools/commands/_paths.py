"""Which paths each command reads and which it writes, and the one rule between them: no output
ever replaces something the command reads, whatever option names either.

Every parameter of every command that names a path is in READS or WRITES below
(tests/test_data_safety.py fails when a new one is in neither). `abaw` checks the rule before a
command's body runs (cli.LazyGroup), so it holds before any work and for every route:

- an output is never an input (a file, or a folder read whole: `infer -o visual/ --visual-dir visual/`);
- an output is never an existing file inside a folder the command reads (`window --label-dir L -o L/t0.txt`);
- a folder written whole (WHOLE: `--crops`, `finetune -o`, a checkpoint folder) never holds an input.

`-` (stdin/stdout) is no path. A value that names nothing on disk (a hub id as `--model`, `T,...`
as `--thresholds`) is no input. Outputs computed per video inside an -o folder are checked again
when they are planned (`_common.plan_outputs`, `formats.check_not_input`).
"""

import os

from abawtools.errors import AbawError

# command -> the parameters (click names) whose values the command reads
READS = {
    "extract-visual": ("inputs", "model", "like", "like_dir", "like_template"),
    "extract-audio": ("inputs", "model"),
    "align": ("inputs", "like", "like_dir", "like_template", "video_dir"),
    "window": ("visual_dir", "audio_dir", "label_dirs", "visual_old", "audio_old", "label_old", "annotations"),
    "train": ("manifest", "val"),
    "infer": ("model_paths", "visual", "audio", "visual_dir", "audio_dir", "like_dir", "like_template"),
    "smooth": ("inputs", "template", "thresholds"),
    "score": ("pair", "pred_dir", "label_dir", "submission", "annotations"),
    "finetune": ("base", "images", "rafdb", "ferplus", "affectnet", "affwild2", "val", "val_images", "val_rafdb",
                 "annotations", "val_annotations"),
}
# command -> the parameters whose values the command writes
WRITES = {
    "extract-visual": ("output", "crops_dir"),
    "extract-audio": ("output",),
    "align": ("output",),
    "window": ("output",),
    "train": ("output", "resume_dir"),
    "infer": ("output",),
    "smooth": ("output",),
    "score": ("output", "plot", "tune_thresholds"),
    "finetune": ("output", "resume_dir"),
}
# outputs that are folders replaced or filled whole: none may hold an input
WHOLE = {("extract-visual", "crops_dir"), ("train", "resume_dir"), ("finetune", "output"), ("finetune", "resume_dir")}


def _paths(value):
    """The paths of a parameter's value: None, a string, or (nested) tuples of them; `-` aside."""
    if value is None or value == "-" or value == "":
        return []
    if isinstance(value, (tuple, list)):
        return [p for v in value for p in _paths(v)]
    return [str(value)]


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _label(command, name):
    """How the user spelled the parameter `name` (`-o`, `--template`, `PRED`)."""
    for param in command.params:
        if param.name == name:
            if param.param_type_name == "argument":
                return "an argument"
            return param.opts[0]
    return name


def check(command_name, command, params):
    """Refuse, before any work, an output of `params` that would replace what the command reads."""
    inputs = [(p, name) for name in READS.get(command_name, ()) for p in _paths(params.get(name))
              if os.path.exists(p)]
    for out_name in WRITES.get(command_name, ()):
        whole = (command_name, out_name) in WHOLE
        for out in _paths(params.get(out_name)):
            for source, in_name in inputs:
                clash = None
                if os.path.realpath(out) == os.path.realpath(source):
                    clash = "is"
                elif os.path.isdir(source) and os.path.isfile(out) and _inside(out, source):
                    clash = "lies inside the folder of"
                elif whole and _inside(source, out):
                    clash = "holds"
                if clash:
                    raise AbawError(f"{out}: this output ({_label(command, out_name)}) {clash} the input "
                                    f"{source} ({_label(command, in_name)}) and would replace it: "
                                    "choose another output")
