"""How much do the shared latents reveal? Distance correlation and model-inversion attacks.

Measurements (docs/privacy.md, docs/design.md §6): dCor(X, Z) between images and their latents; the
server-side attack suite (no leaked pair: what the alignment hands the server, scored by PSNR, SSIM
and re-identification against the class-mean and mean-image guesses); and a model-inversion attack
from one client's leaked (x, z) pairs on the other clients' stored latents.

Split by job: `metrics` (dCor, image metrics, re-identification), `views` (what the server holds),
`decoders` (the attacker's decoder and its training), `anchor_attacks` and `fora` (the server-side
attacks), `attacker` (leaked pairs), `suite` (runs and scores the attacks), `phase` (the fleet phase
over a run's store), `figures` (tables and PNG).
"""
from fleet.privacy.attacker import AttackResult, attack, standardize, train_attacker
from fleet.privacy.figures import format_privacy, plot_reconstructions, privacy_line
from fleet.privacy.metrics import distance_correlation, reconstruction_metrics, reidentification
from fleet.privacy.phase import run_privacy
from fleet.privacy.suite import ATTACKS, Truth, run_suite
from fleet.privacy.views import ClientView, ServerView

__all__ = ["ATTACKS", "AttackResult", "ClientView", "ServerView", "Truth", "attack", "distance_correlation",
           "format_privacy", "plot_reconstructions", "privacy_line", "reconstruction_metrics", "reidentification",
           "run_privacy", "run_suite", "standardize", "train_attacker"]
