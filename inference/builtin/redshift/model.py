"""The built-in photometric-redshift model as a model folder (dogfooding the interface).

The folder holds this module and ``model.pt``, a checkpoint with its config
(``inference.model.save_checkpoint``): ``cosmicai run --model full|tiny|CHECKPOINT``
builds such a folder and deploys it like any user's. ``predict`` runs the fast
fp32 inference forward (``inference.precision.prepare``), prepared once per
loaded model on the device of its first batch.
"""

from pathlib import Path

from inference.model import load_checkpoint
from inference.precision import prepare


def load(folder: Path):
    return load_checkpoint(folder / "model.pt")


def predict(model, batch):
    net = model.__dict__.get("_cosmicai_prepared")  # kept outside nn.Module's registry: not a submodule
    if net is None:
        net = model.__dict__["_cosmicai_prepared"] = prepare(model, "fp32", batch["images"].device)
    return net(batch["images"], batch["magnitudes"])  # (B,) redshifts
