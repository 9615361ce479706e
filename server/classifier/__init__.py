"""The server's classifier: an MLP over stored latents, on analog tiles or digital torch, one job a module.

- ``errors``: why a store cannot be trained on or a client cannot be served (torch-free).
- ``model``: the network -- per-client conditioning (embedding or adapter head) and the MLP trunk.
- ``alignment``: public-anchor maps of each client's latent space onto one reference space.
- ``training``: the held-out split, the optimizer and the training loop (``train_classifier``).
- ``checkpoints``: the versioned checkpoint layout in the store and ``latest.json`` (torch-free).
- ``loading``: a checkpoint loaded for inference (``Classifier``, ``load_classifier``).
- ``report``: one-line descriptions and the terminal table of a training run.
"""
