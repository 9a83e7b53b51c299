"""Backbones, attention modules, NetVLAD and the full place-recognition model (see docs/architecture.md)."""
