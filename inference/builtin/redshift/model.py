"""The built-in photometric-redshift model as a model folder (dogfooding the interface).

The folder holds this module and ``model.pt``, a checkpoint with its config
(``inference.model.save_checkpoint``): ``cosmicai run --model full|tiny|CHECKPOINT``
builds such a folder and deploys it like any user's.
"""

from pathlib import Path

from inference.model import load_checkpoint


def load(folder: Path):
    return load_checkpoint(folder / "model.pt")


def predict(model, batch):
    return model(batch["images"], batch["magnitudes"])  # (B,) redshifts
