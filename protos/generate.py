"""Regenerate the Python code of the .proto contract with grpcio-tools.

`python -m protos.generate` writes next to the .proto; `generate(out_dir)` lets a test write a fresh
copy elsewhere and compare it with the checked-in one (stale generated code fails that test).
"""
from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROTO_DIR.parent
PROTO_FILES = ("latent_service.proto",)


def generate(out_root: Path = REPO_ROOT) -> list[Path]:
    """Run protoc on every contract file; return the generated files under ``out_root/protos``."""
    # on use: grpcio-tools is needed only to regenerate (start-up time of whoever imports this module)
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    (out_root / "protos").mkdir(parents=True, exist_ok=True)
    outputs: list[Path] = []
    for name in PROTO_FILES:
        args = [
            "grpc_tools.protoc",
            f"-I{REPO_ROOT}",
            f"-I{include}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            str(PROTO_DIR / name),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {name}")
        stem = name.removesuffix(".proto")
        outputs += [out_root / "protos" / f"{stem}{suffix}" for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]
    return outputs


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(REPO_ROOT))
    sys.exit(0)
