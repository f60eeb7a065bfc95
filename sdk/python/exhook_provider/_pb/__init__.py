"""Generated protobuf messages of emqx.exhook.v1, v2 and v3 (scripts/gen_pb.py); do not edit."""
