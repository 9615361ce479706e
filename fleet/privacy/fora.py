"""FORA-style inversion without anchors (Xu et al., "A Stealthy Wrongdoer: Feature-Oriented
Reconstruction Attack against Split Learning", CVPR 2024), adapted to stored latents.

The server trains a substitute autoencoder on public images only: its encoder is pushed to produce
latents distributed like the victim's stored ones (a kernel MMD between a batch of substitute latents
of public images and a batch of the victim's latents, both in the victim's standardized units), while
its decoder learns to reconstruct the public images from the substitute's latents. Once the two
distributions match, the decoder inverts the victim's latents. FORA matches with a discriminator;
MMD has no adversary to balance and is steadier on a few hundred rows.

Label-conditioned (`labels`): the server holds the label of every stored row and of every public
image, so it matches the joint distribution of (z, y) (the one-hot label, scaled, appended to z),
which pins each class of the substitute onto the same class of the victim.
The substitute starts from the server's pretrained autoencoder when it has one, else from the
clients' shared initial weights when the alignment shares them (the server knows the init seed),
else from a seeded initialization of the clients' architecture.
Without labels and without a shared start the MMD match is weak (a distribution is matched by many
encoders); docs/privacy.md has the measured figures.
"""
from __future__ import annotations

import numpy as np
import torch

from edge_client.autoencoder import build_autoencoder
from fleet.privacy.decoders import FitSettings, decode
from fleet.privacy.views import ServerView


def mmd2(a: torch.Tensor, b: torch.Tensor, bandwidths: list[float]) -> torch.Tensor:
    """Biased squared MMD between row sets a and b with a sum of Gaussian kernels."""
    x = torch.cat([a, b])
    d2 = torch.cdist(x, x) ** 2
    k = sum(torch.exp(-d2 / (2.0 * s * s)) for s in bandwidths)
    n = len(a)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2.0 * k[:n, n:].mean()


def fora(view: ServerView, victims: list[str], settings: FitSettings, labels: bool = True,
         mmd_weight: float = 1.0, batch_size: int = 64) -> dict[str, np.ndarray]:
    """{victim: reconstructions} from a per-victim substitute trained on the public images."""
    cfg = view.cfg
    d = cfg.model.latent_dim
    scale = float(np.sqrt(d))                   # standardized latents: typical distance ~ sqrt(2 d)
    bandwidths = [0.5 * scale, scale, 2.0 * scale]
    onehot = torch.eye(view.num_classes) * 3.0 * scale
    x_pub = torch.as_tensor(np.array(view.public_x, dtype=np.float32))
    y_pub = torch.as_tensor(np.asarray(view.public_y, dtype=np.int64))
    out = {}
    for k, name in enumerate(victims):
        c = view.clients[name]
        z_c = torch.as_tensor(c.z)
        y_c = torch.as_tensor(c.y)
        mu, sd = z_c.mean(0), z_c.std(0).clamp_min(1e-8)
        z_std = (z_c - mu) / sd
        seed = settings.seed + 211 * k
        model = build_autoencoder(view.image_shape, d, cfg.model.autoencoder, tile_config=None,
                                  conv_channels=cfg.model.conv_channels, mlp_hidden=cfg.model.mlp_hidden,
                                  init_seed=cfg.init.seed if cfg.init.seed is not None else seed)
        if view.pretrained is not None:
            model.load_state_dict(view.pretrained)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed + 1)
            opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
            model.train()
            for _ in range(settings.epochs):
                perm = torch.randperm(len(x_pub), generator=gen)
                for s in range(0, len(perm), batch_size):
                    b = perm[s:s + batch_size]
                    zs = model.encoder(x_pub[b])
                    pick = torch.randint(len(z_std), (len(b),), generator=gen)
                    a, t = (zs - mu) / sd, z_std[pick]
                    if labels:
                        a = torch.cat([a, onehot[y_pub[b]]], 1)
                        t = torch.cat([t, onehot[y_c[pick]]], 1)
                    loss = torch.mean((model.decoder(zs) - x_pub[b]) ** 2) + mmd_weight * mmd2(a, t, bandwidths)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        out[name] = decode(model.decoder, c.z)
    return out
