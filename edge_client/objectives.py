"""Training objectives that make the latents say less: NoPeek and a label-aware bottleneck.

* NoPeek (Vepakomma et al. 2020): add `nopeek_weight * dCor(x, z)` on each mini-batch, the sample
  distance correlation between the flattened images and their latents. It is 0 for independent x and z,
  1 for a similarity map, and it sees non-linear dependence, so minimizing it pushes the encoder to
  keep less of x than reconstruction alone would (Titcombe et al. 2021: dCor 0.84 -> 0.44 for
  97.9 -> 97.3% on MNIST).
* Label-aware bottleneck: the device holds its labels, and the server only ever needs the class. A
  digital linear head on z (it never leaves the device) is trained with cross-entropy, and the
  reconstruction term is weighted down by 1 / (1 + label_weight):
      loss = recon / (1 + label_weight) + label_weight * CE(head(z), y) + nopeek_weight * dCor(x, z).
  Why this form: the reconstruction term is what makes z keep pixel detail (stroke width, slant,
  position), which the classifier does not need and an inverting server exploits; the cross-entropy
  term keeps z linearly separable by class, which is what the server's classifier uses. Weighting the
  first down and the second up moves z from "an image code" towards "a class code"; with NoPeek on
  top, the pair is a supervised information bottleneck (keep I(z; y), penalize the dependence on x)
  without a stochastic encoder, which analog tiles with a deterministic forward pass do not give.
  At label_weight = 0 the loss is today's reconstruction loss exactly.
* Public class prototypes (`prototype_weight`): a fixed point P[c] per class, drawn once from a public
  seed (the same on every device; `class_prototypes`), orthogonal and of norm `prototype_radius`, and
  a pull of each latent onto its class's point:
      + prototype_weight * ||z - P[y]||^2 / radius^2   (and recon / (1 + label_weight + prototype_weight)).
  Why: a cross-entropy head only needs z to be separable; it leaves the directions it does not read
  (22 of 32 for ten classes) free to keep the image, and the head's own weights are per device, so
  every device's class code sits elsewhere. The pull constrains every direction: z collapses onto one
  point per class, so what is left of the image is the small residual around it, which latent noise
  of a fraction of the prototypes' spacing (radius * sqrt(2)) drowns while the class stays readable.
  And because the prototypes are shared, every device's class code lands in the same place: the
  clients' latent spaces agree on what the server's classifier needs without any exchanged data.
Units: recon is the per-image squared error summed over pixels (~15-30 for 28x28 digits), CE and
dCor are O(1), so useful weights are O(1..100); docs/privacy.md has the measured points.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

PROTOTYPE_SEED = 25   # public: every device (and anyone) draws the same prototypes from it


def _centered_distances(a: torch.Tensor) -> torch.Tensor:
    """Double-centred Euclidean distance matrix of the rows of a (differentiable, also at d = 0)."""
    sq = (a * a).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * a @ a.T).clamp_min(1e-12)
    d = torch.sqrt(d2)
    return d - d.mean(dim=0, keepdim=True) - d.mean(dim=1, keepdim=True) + d.mean()


def distance_correlation(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Sample distance correlation dCor(x, z) (Szekely et al. 2007, V-statistic, the one NoPeek uses)
    between the rows of x and z (trailing dims flattened), as a differentiable 0-dim tensor in [0, 1]."""
    if x.shape[0] != z.shape[0] or x.shape[0] < 2:
        raise ValueError(f"distance_correlation: got {x.shape[0]} and {z.shape[0]} rows; need as many, >= 2")
    a = _centered_distances(x.reshape(x.shape[0], -1).to(torch.float64))
    b = _centered_distances(z.reshape(z.shape[0], -1).to(torch.float64))
    dcov2 = (a * b).mean().clamp_min(0.0)
    dvar = ((a * a).mean() * (b * b).mean()).clamp_min(1e-24)
    return torch.sqrt(dcov2 / torch.sqrt(dvar) + 1e-12).to(z.dtype)


class LabelHead(nn.Module):
    """A digital linear classifier on z, trained with the encoder and kept on the device."""

    def __init__(self, latent_dim: int, num_classes: int, seed: int):
        super().__init__()
        with torch.random.fork_rng(devices=[]):   # its init must not move the chip's noise streams
            torch.manual_seed(int(seed))
            self.linear = nn.Linear(latent_dim, num_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)


def class_prototypes(num_classes: int, latent_dim: int, radius: float) -> torch.Tensor:
    """The public class prototypes (num_classes, latent_dim), float32, each of L2 norm `radius`:
    orthonormal directions (QR of a Gaussian matrix drawn from PROTOTYPE_SEED) when num_classes <=
    latent_dim, else unit Gaussian directions. A pure function of its arguments: no global RNG is
    touched, so the chip's noise streams do not move, and every device gets the same points."""
    if num_classes < 2 or latent_dim < 1 or not radius > 0:
        raise ValueError(f"class_prototypes: got {num_classes} classes, latent_dim {latent_dim}, radius {radius}; "
                         "need >= 2 classes, latent_dim >= 1, radius > 0")
    g = np.random.default_rng(np.random.SeedSequence([PROTOTYPE_SEED, num_classes, latent_dim]))
    if num_classes <= latent_dim:
        q, r = np.linalg.qr(g.normal(size=(latent_dim, num_classes)))
        dirs = (q * np.sign(np.diag(r))).T                      # sign-fixed: unique for a given draw
    else:
        dirs = g.normal(size=(num_classes, latent_dim))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return torch.from_numpy((radius * dirs).astype(np.float32))


def prototype_loss(z: torch.Tensor, y: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||z - P[y]||^2 in units of the prototypes' squared norm (O(1): 2 when z
    sits on another class's prototype, 1 at the origin, 0 on its own)."""
    radius2 = (prototypes[0] ** 2).sum()
    return ((z - prototypes[y]) ** 2).sum(dim=1).mean() / radius2


def defended_loss(recon_loss: torch.Tensor, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None,
                  head: LabelHead | None, nopeek_weight: float, label_weight: float,
                  prototypes: torch.Tensor | None = None, prototype_weight: float = 0.0) -> torch.Tensor:
    """The module docstring's loss: recon / (1 + label_weight + prototype_weight) + label_weight * CE
    + prototype_weight * ||z - P[y]||^2 / radius^2 + nopeek_weight * dCor."""
    down = label_weight + prototype_weight
    loss = recon_loss / (1.0 + down) if down else recon_loss
    if label_weight:
        if head is None or y is None:
            raise ValueError("label_weight > 0 needs the labels and a LabelHead")
        loss = loss + label_weight * nn.functional.cross_entropy(head(z), y)
    if prototype_weight:
        if prototypes is None or y is None:
            raise ValueError("prototype_weight > 0 needs the labels and the class prototypes")
        loss = loss + prototype_weight * prototype_loss(z, y, prototypes)
    if nopeek_weight and x.shape[0] >= 2:
        loss = loss + nopeek_weight * distance_correlation(x, z)
    return loss
