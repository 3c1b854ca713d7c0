"""The built-in photometric-redshift model as a model folder (dogfooding the interface).

The folder holds this module and either ``builtin.json`` (a built-in model's
name and seed: the weights are built here, seeded, as ``cosmicai run --model
astromae|tiny`` asks) or ``model.pt``, a checkpoint in any format
``inference.checkpoint`` reads (``--model CHECKPOINT`` writes this project's
format, converting a reference checkpoint on the host).
``predict`` runs the fast fp32 inference forward (``inference.precision.prepare``),
prepared once per loaded model: in ``load`` on a CPU-only machine (outside the
timed loop), else on the device of the first batch.
"""

import json
from pathlib import Path

import torch

from inference.checkpoint import load_checkpoint, load_model
from inference.precision import prepare


def load(folder: Path):
    if (folder / "model.pt").is_file():
        model = load_checkpoint(folder / "model.pt")
    else:
        spec = json.loads((folder / "builtin.json").read_text())
        model = load_model(spec["model"], seed=int(spec.get("seed", 0)))
    if not torch.cuda.is_available():
        model.__dict__["_cosmicai_prepared"] = prepare(model, "fp32", "cpu")
    return model


def predict(model, batch):
    net = model.__dict__.get("_cosmicai_prepared")  # kept outside nn.Module's registry: not a submodule
    if net is None:
        net = model.__dict__["_cosmicai_prepared"] = prepare(model, "fp32", batch["images"].device)
    return net(batch["images"], batch["magnitudes"])  # (B,) redshifts
