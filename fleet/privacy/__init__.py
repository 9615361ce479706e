"""How much do the shared latents reveal? Distance correlation and a model-inversion attack.

Two measurements (docs/design.md §6): dCor(X, Z) between images and their latents, and a
model-inversion attack from one client's leaked (x, z) pairs on the other clients' stored
latents, reported as MSE / PSNR / SSIM next to two baselines (the mean image of the leaked set,
and the victim's own decoder: roughly what the latent can reveal at most).

Split by job: `metrics` (dCor, image metrics), `attacker` (the attacker's decoder and its
scoring), `phase` (the fleet phase over a run's store), `figures` (table and PNG).
"""
from fleet.privacy.attacker import AttackResult, attack, standardize, train_attacker
from fleet.privacy.figures import format_privacy, plot_reconstructions
from fleet.privacy.metrics import distance_correlation, reconstruction_metrics
from fleet.privacy.phase import run_privacy

__all__ = ["AttackResult", "attack", "distance_correlation", "format_privacy", "plot_reconstructions",
           "reconstruction_metrics", "run_privacy", "standardize", "train_attacker"]
