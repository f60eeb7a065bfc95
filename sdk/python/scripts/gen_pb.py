"""Regenerates exhook_provider/_pb/exhook_v{1,2,3}_pb2.py from proto/emqx/exhook/v*/exhook.proto.

    python -m venv /tmp/gen && /tmp/gen/bin/pip install grpcio-tools==1.85.1
    /tmp/gen/bin/python sdk/python/scripts/gen_pb.py          # rewrite the committed files
    /tmp/gen/bin/python sdk/python/scripts/gen_pb.py --check  # exit 1 if they are not current

Only message code is generated (no *_pb2_grpc.py): the kit builds its gRPC handlers from the
service descriptor. The gateway's test suite also compares the committed descriptors with the
protos (crates/gateway/tests/python_kit.rs) without needing grpcio-tools.
"""

import pathlib
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[3]
OUT = ROOT / "sdk/python/exhook_provider/_pb"


def generate(into: pathlib.Path) -> dict:
    files = [f"emqx/exhook/v{v}/exhook.proto" for v in (1, 2, 3)]
    args = ["protoc", f"-I{ROOT / 'proto'}", f"--python_out={into}", *files]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    return {f"exhook_v{v}_pb2.py": (into / f"emqx/exhook/v{v}/exhook_pb2.py").read_text() for v in (1, 2, 3)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(pathlib.Path(tmp))
    if "--check" in sys.argv:
        stale = [n for n, text in fresh.items() if not (OUT / n).is_file() or (OUT / n).read_text() != text]
        if stale:
            sys.exit(f"stale generated code: {', '.join(stale)}; run sdk/python/scripts/gen_pb.py")
        print("generated code is current")
        return
    for name, text in fresh.items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
