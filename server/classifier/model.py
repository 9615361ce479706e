"""The classifier network: z (+ per-client conditioning) -> Linear -> ReLU -> ... -> Linear.

Same architecture on analog tiles and in digital torch: analog mode converts every Linear of the trunk
to an analog layer with the configured TileConfig, so the two are a like-for-like reference.

``client_conditioning = "embedding"`` (docs/design.md §1.3, option b): a learned per-client vector is
concatenated to z, because each client's latent space is its own. A client unseen at training time
gets the mean embedding. An embedding only shifts the first layer's bias per client: it cannot undo a
rotation or scaling of a client's latent space.

``client_conditioning = "adapter"`` (option c, a shared trunk with a small per-client head): each
client c gets an affine map ``z -> A_c z + b_c`` (A_c = I, b_c = 0 at init) in front of the shared
MLP trunk, trained jointly with it. ``adapter_rank = 0`` makes A_c a full d x d matrix, d(d+1)
parameters per client, enough to undo any rotation/scaling; ``adapter_rank = r`` uses
``A_c = I + U_c V_c^T`` (U_c = 0 at init), d(2r+1) parameters. The heads are **digital** (even when
the trunk is on analog tiles): they are tiny (d^2 MACs per sample), selected per request, and must
stay exact per client; the trunk carries the analog cost. A client unseen at training time has no
head, and an identity head would silently misclassify its (unaligned) latents, so it is refused
(``UnknownClient``) -- unless its latents are anchor-aligned, when the identity head is right.
"""
from __future__ import annotations

import torch
from torch import nn

import analog
from server.classifier.errors import UnknownClient
from server.config import ClassifierConfig


def adapter_parameters(latent_dim: int, rank: int) -> int:
    """Parameters of one client's adapter head: full d(d+1), low-rank d(2r+1)."""
    return latent_dim * (latent_dim + 1) if rank == 0 else latent_dim * (2 * rank + 1)


class ClientAdapter(nn.Module):
    """Per-client affine head z -> A_c z + b_c (digital), identity at init; see the module docstring."""

    def __init__(self, n_clients: int, dim: int, rank: int, identity_for_unknown: bool = False) -> None:
        super().__init__()
        self.rank = rank
        self.identity_for_unknown = identity_for_unknown
        self.bias = nn.Parameter(torch.zeros(n_clients, dim))
        if rank == 0:
            self.weight = nn.Parameter(torch.eye(dim).repeat(n_clients, 1, 1))
        else:  # I + U V^T: U = 0 keeps the identity at init, V random so U gets a gradient
            self.u = nn.Parameter(torch.zeros(n_clients, dim, rank))
            self.v = nn.Parameter(torch.randn(n_clients, dim, rank) / dim ** 0.5)

    def forward(self, z: torch.Tensor, client_idx: torch.Tensor) -> torch.Tensor:
        unknown = client_idx < 0
        if bool(unknown.any()):
            if not self.identity_for_unknown:
                raise UnknownClient("client_id: no adapter head for this client")
            out = self.forward(z[~unknown], client_idx[~unknown]) if bool((~unknown).any()) else z[:0]
            full = z.clone()
            full[~unknown] = out
            return full
        b = self.bias[client_idx]
        if self.rank == 0:
            return torch.bmm(self.weight[client_idx], z.unsqueeze(2)).squeeze(2) + b
        vz = torch.bmm(self.v[client_idx].transpose(1, 2), z.unsqueeze(2))    # (B, r, 1)
        return z + torch.bmm(self.u[client_idx], vz).squeeze(2) + b


class LatentMLP(nn.Module):
    """z (+ client embedding or through a client's adapter head) -> hidden ReLU layers -> class logits."""

    def __init__(self, latent_dim: int, hidden: list[int], n_classes: int, n_clients: int,
                 cfg: ClassifierConfig) -> None:
        super().__init__()
        extra = cfg.embedding_dim if cfg.client_conditioning == "embedding" else 0
        self.embedding = nn.Embedding(max(n_clients, 1), extra) if extra else None
        self.adapter = (ClientAdapter(max(n_clients, 1), latent_dim, cfg.adapter_rank,
                                      identity_for_unknown=cfg.anchor_map != "none")
                        if cfg.client_conditioning == "adapter" else None)
        dims = [latent_dim + extra, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], n_classes))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, client_idx: torch.Tensor) -> torch.Tensor:
        if self.adapter is not None:
            z = self.adapter(z, client_idx)
        if self.embedding is not None:
            known = client_idx >= 0
            emb = self.embedding(client_idx.clamp(min=0))
            if not bool(known.all()):
                mean = self.embedding.weight.mean(dim=0, keepdim=True).expand_as(emb)
                emb = torch.where(known[:, None], emb, mean)
            z = torch.cat([z, emb], dim=1)
        return self.body(z)


def build_model(latent_dim: int, n_classes: int, n_clients: int, cfg: ClassifierConfig) -> LatentMLP:
    """The network of ``cfg`` (hidden sizes, conditioning), its trunk on analog tiles when ``cfg`` has them.
    The caller seeds torch first: a seeded TileConfig then rebuilds the same devices at load time."""
    model = LatentMLP(latent_dim, cfg.hidden, n_classes, n_clients, cfg)
    tile = cfg.tile_config()
    if tile is not None:
        analog.reset_layer_counter()
        model.body = analog.convert_to_analog(model.body, tile)
    return model


def predict_proba(model: nn.Module, z: torch.Tensor, idx: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """Softmax class probabilities of ``model`` on rows ``z`` of clients ``idx``, in batches, no grad."""
    out = []
    with torch.no_grad():
        for s in range(0, z.shape[0], batch):
            out.append(torch.softmax(model(z[s:s + batch], idx[s:s + batch]), dim=1))
    return torch.cat(out) if out else torch.zeros(0)


def analog_weights(model: nn.Module) -> list[torch.Tensor]:
    """The effective weights of every analog layer of ``model``, in module order."""
    return [m.get_weights().detach().clone() for m in model.modules() if hasattr(m, "get_weights")]
