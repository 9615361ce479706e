"""The fleet's own model as a model of the analog.studies robustness study: the edge client's conv
encoder followed by the server classifier's MLP, trained end to end so both kinds of training see it."""
from __future__ import annotations

import torch
from torch import nn

from analog.studies.robustness import ModelSpec
from edge_client.autoencoder import build_autoencoder
from edge_client.config import EdgeConfig
from server.config import ClassifierConfig


def fleet_model_spec() -> ModelSpec:
    """The fleet's conv encoder (edge_client defaults, latent 32) followed by the server's classifier
    MLP (its default hidden sizes) on mnist5k."""
    edge, clf = EdgeConfig(), ClassifierConfig()

    def build(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ae = build_autoencoder((1, 28, 28), edge.model.latent_dim, "conv",
                                   conv_channels=tuple(edge.model.conv_channels),
                                   init_seed=seed)
            dims = [edge.model.latent_dim, *clf.hidden]
            layers: list[nn.Module] = []
            for a, b in zip(dims[:-1], dims[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            layers.append(nn.Linear(dims[-1], 10))
            return nn.Sequential(nn.Unflatten(1, (1, 28, 28)), ae.encoder, nn.Sequential(*layers))

    return ModelSpec("fleet-conv", "mnist5k", build,
                     f"fleet conv encoder (z={edge.model.latent_dim}) + classifier MLP {list(clf.hidden)} on mnist5k")
