"""Train the example autoencoder briefly on synthetic cutouts and write weights.pt (seeded).

Usage: python examples/autoencoder/make_weights.py   (about a minute on 2 cores)
"""

import importlib.util
from pathlib import Path

import torch

from inference.data import generate

HERE = Path(__file__).parent


def main() -> None:
    spec = importlib.util.spec_from_file_location("autoencoder_model", HERE / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.ConvAutoencoder()
    images = generate(4096, seed=123)["images"]
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(600):
        batch = images[torch.randint(0, len(images), (128,))]
        loss = model(batch).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 100 == 0:
            print(f"step {step}: reconstruction error {loss.item():.5f}")
    torch.save(model.state_dict(), HERE / "weights.pt")
    print(f"wrote {HERE / 'weights.pt'}")


if __name__ == "__main__":
    main()
