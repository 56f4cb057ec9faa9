"""The one training loop (engine.fit) on a job small enough to reason about: gradient accumulation,
early stopping and the best epoch, and the parameter groups finetune hands it."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from abawtools import engine, finetuning


@dataclass
class Opts:
    epochs: int = 3
    batch_size: int = 8
    accumulate: int = 1
    lr: float = 0.05
    weight_decay: float = 0.0
    warmup: float = 0.0
    seed: int = 0
    device: str = "cpu"
    dtype: str = "fp32"
    patience: int = 0
    checkpoint_every: int = 0


class LinearJob(engine.Job):
    """Least squares on 32 fixed points; validation returns scripted scores."""

    unit = "points"

    def __init__(self, scores=None):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(32, 4, generator=g), torch.randn(32, generator=g)
        self.scores = list(scores or [])
        self.validated = 0

    def build(self, device, rank, world, log):
        return torch.nn.Linear(4, 1)

    def size(self):
        return 32

    def batches(self, index_lists, device):
        for idx in index_lists:
            idx = torch.as_tensor(np.asarray(idx))
            yield {"x": self.x[idx], "y": self.y[idx]}

    def loss(self, net, batch, key):
        err = (net(batch["x"])[:, 0] - batch["y"]) ** 2
        return err.sum(), len(err)

    def validate(self, model, device, autocast_dtype):
        if not self.scores:
            return None
        score = self.scores[self.validated]
        self.validated += 1
        return {"macro_f1": score, "accuracy": score}

    def fingerprint(self):
        return "linear"


def test_accumulated_micro_batches_equal_one_large_batch(tmp_path):
    a, _, _ = engine.fit(LinearJob(), Opts(batch_size=16, accumulate=1), str(tmp_path / "a"), log=lambda m: None)
    b, _, _ = engine.fit(LinearJob(), Opts(batch_size=8, accumulate=2), str(tmp_path / "b"), log=lambda m: None)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    notes = []
    job = LinearJob(scores=[0.2, 0.5, 0.4, 0.45, 0.3, 0.9])
    model, summary, _ = engine.fit(job, Opts(epochs=6, patience=2), str(tmp_path / "c"), log=notes.append)
    assert summary["best"]["epoch"] == 2 and summary["epochs_run"] == 4  # epochs 3 and 4 no better: stop
    assert [h["val_macro_f1"] for h in summary["history"]] == [0.2, 0.5, 0.4, 0.45]
    assert any("early stop after epoch 4" in n for n in notes)


def test_resume_keeps_the_best_epoch_from_its_file_and_from_a_0_2_0_checkpoint(tmp_path):
    """The best epoch (2 of 4) is before the stop (the last step of epoch 3, before its validation):
    the resumed run must end with its weights, read back from best-epoch2.pt, or from inside a
    checkpoint of abawtools 0.2.0."""
    import os
    import shutil

    quiet = dict(log=lambda m: None)
    straight, summary, _ = engine.fit(LinearJob([0.2, 0.9, 0.4, 0.3]), Opts(epochs=4), str(tmp_path / "a"), **quiet)
    assert summary["best"]["epoch"] == 2
    with pytest.raises(engine.Preempted):
        engine.fit(LinearJob([0.2, 0.9]), Opts(epochs=4), str(tmp_path / "b"), stop_after_steps=12, **quiet)
    assert sorted(os.listdir(tmp_path / "b")) == ["PREEMPTED", "best-epoch2.pt", "checkpoint.pt"]
    shutil.copytree(tmp_path / "b", tmp_path / "old")
    state = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)
    state["best_state"] = torch.load(tmp_path / "old" / state.pop("best_file"), weights_only=True)
    torch.save(state, tmp_path / "old" / "checkpoint.pt")  # the 0.2.0 layout: best weights inside
    os.unlink(tmp_path / "old" / "best-epoch2.pt")
    for folder in ("b", "old"):
        resumed, summary, _ = engine.fit(LinearJob([0.4, 0.3]), Opts(epochs=4), str(tmp_path / folder), **quiet)
        assert summary["best"]["epoch"] == 2 and len(summary["history"]) == 4
        for p, q in zip(straight.parameters(), resumed.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("name, layers, expected", [
    ("embeddings.patch_embeddings.projection.weight", 12, 0),
    ("encoder.layer.0.attention.attention.query.weight", 12, 1),
    ("encoder.layer.11.output.dense.bias", 12, 12),
    ("pooler.layernorm.weight", 12, 13),
    ("layernorm.weight", 12, 13),
])
def test_layer_ids_for_layer_wise_decay(name, layers, expected):
    assert finetuning.layer_id(name, layers) == expected


def test_finetune_parameter_groups_decay_by_depth(tmp_path):
    from abawtools import demo

    backbone = demo.tiny_backbone(str(tmp_path / "beit"), "beit")
    model = finetuning.BackboneClassifier(finetuning.visual.load_backbone(backbone), 32, 8)
    job = finetuning.FinetuneJob.__new__(finetuning.FinetuneJob)
    job.opts = finetuning.FinetuneOptions(layer_decay=0.5, head_lr_mult=20.0)
    groups = job.param_groups(model)
    scales = sorted(g["lr_scale"] for g in groups)
    assert scales == [0.125, 0.25, 0.5, 1.0, 20.0]  # embeddings, block 0, block 1, top, head (2 layers)
    head = [g for g in groups if g["lr_scale"] == 20.0][0]
    assert head["weight_decay"] == 0.01 and len(head["params"]) == 2
    n = sum(p.numel() for g in groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters() if p.requires_grad)
