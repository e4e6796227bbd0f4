"""Shared fixtures: seeded generators, small images, and a tiny random-weight model file."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np
import pytest
import torch

from scoretool.nets import EDMPrecond, UNetConfig
from scoretool.weights import save_model


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def tiny_model(tmp_path_factory):
    """A factory: tiny_model(channels) → path of a small random-weight scoretool model."""
    made = {}

    def make(channels: int = 1):
        if channels not in made:
            torch.manual_seed(channels)
            net = EDMPrecond(UNetConfig(channels=channels, widths=[8, 16], blocks_per_level=1, embed_dim=16))
            path = tmp_path_factory.mktemp("models") / f"tiny-{channels}.safetensors"
            save_model(path, net, {"kind": "prior", "sigma_min": 0.002, "sigma_max": 10.0, "training_data": "none (test)"})
            made[channels] = path
        return made[channels]

    return make


@pytest.fixture(scope="package")
def random_model(tmp_path_factory):
    """A factory: random_model(channels) → path of a small three-level model with every weight random
    (tiny_model's zero-initialised head makes F ≡ 0 and D(x, σ) = c_skip·x, which too much reproduces)."""
    made = {}

    def make(channels: int = 1):
        if channels not in made:
            torch.manual_seed(10 + channels)
            net = EDMPrecond(UNetConfig(channels=channels, widths=[8, 16, 16], blocks_per_level=1, embed_dim=16))
            with torch.no_grad():
                for p in net.parameters():
                    p.copy_(torch.randn_like(p) * 0.08)
            path = tmp_path_factory.mktemp("random") / f"random-{channels}.safetensors"
            save_model(path, net, {"kind": "prior", "sigma_min": 0.002, "sigma_max": 10.0, "training_data": "none (test)"})
            made[channels] = path
        return made[channels]

    return make
