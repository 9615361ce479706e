"""One classifier training run in a child process, under an address-space limit.

Why a child: a config that slips past the server's size estimate, or a store larger than expected,
then fails that child with "out of memory" instead of taking the server (and every open upload) down,
and shutdown can end a long run at once instead of waiting for it.

Protocol: ``python -m server.trainer`` reads one JSON object from stdin (store, config, torch_threads,
memory_bytes) and prints one JSON object: ``{"info": ...}`` or ``{"error": ..., "code": ...}``.
"""
from __future__ import annotations

import json
import resource
import sys


def main() -> int:
    job = json.loads(sys.stdin.read())
    if job.get("memory_bytes"):
        limit = int(job["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        # imported only now, under the memory limit set above: loading torch may itself fail there
        import torch

        from server.classifier.errors import TrainingError
        from server.classifier.training import train_classifier
        from server.config import ClassifierConfig
        from server.store import StoreError

        if job.get("torch_threads"):
            torch.set_num_threads(int(job["torch_threads"]))
        cfg = ClassifierConfig.from_dict(job["config"])
        try:
            out = {"info": train_classifier(job["store"], cfg)}
        except (TrainingError, StoreError) as exc:
            out = {"error": str(exc), "code": "FAILED_PRECONDITION"}
    except MemoryError:
        out = {"error": f"classifier: training ran out of memory (train_memory_bytes {job.get('memory_bytes')})",
               "code": "RESOURCE_EXHAUSTED"}
    except (ImportError, OSError) as exc:   # under a tight limit even loading torch's libraries fails
        out = {"error": f"classifier: training could not start within train_memory_bytes "
                        f"({job.get('memory_bytes')}): {str(exc)[:200]}", "code": "RESOURCE_EXHAUSTED"}
    except RuntimeError as exc:   # torch reports a failed allocation as RuntimeError
        text = str(exc)
        code = "RESOURCE_EXHAUSTED" if "alloc" in text.lower() or "memory" in text.lower() else "INTERNAL"
        out = {"error": f"classifier: training failed: {text.splitlines()[0][:300] if text else type(exc).__name__}",
               "code": code}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
