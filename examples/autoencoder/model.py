"""Anomaly scoring with a small convolutional autoencoder over the 5-band cutouts.

A model folder (see the README): ``load`` builds the network and reads
``weights.pt``; ``predict`` returns one anomaly score per sample, the mean
squared reconstruction error of the asinh-scaled image, shape (B,). A higher
score is a cutout the autoencoder reconstructs worse: an unusual galaxy.
``make_weights.py`` (beside this file) trained ``weights.pt`` on synthetic data.
"""

from pathlib import Path

import torch
from torch import nn


class ConvAutoencoder(nn.Module):
    def __init__(self, channels: int = 5, width: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.GELU(),  # (B, w, 16, 16)
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GELU(),  # (B, 2w, 8, 8)
            nn.Conv2d(2 * width, 4, 1),  # (B, 4, 8, 8): the bottleneck
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4, 2 * width, 4, stride=2, padding=1), nn.GELU(),  # (B, 2w, 16, 16)
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.GELU(),  # (B, w, 32, 32)
            nn.Conv2d(width, channels, 3, padding=1),  # (B, 5, 32, 32)
        )

    @staticmethod
    def scale(images: torch.Tensor) -> torch.Tensor:
        return torch.asinh(images)  # compresses bright cores, keeps the noise floor linear

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.scale(images)
        return ((self.decoder(self.encoder(x)) - x) ** 2).mean(dim=(1, 2, 3))  # (B,) anomaly score


def load(folder: Path) -> ConvAutoencoder:
    model = ConvAutoencoder()
    model.load_state_dict(torch.load(folder / "weights.pt", map_location="cpu", weights_only=True))
    return model.eval()


def predict(model: ConvAutoencoder, batch: dict) -> torch.Tensor:
    return model(batch["images"])
