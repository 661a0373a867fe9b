"""The renderer half of the exported graph (torch, used at export time only)."""

from s2v.render.warp import WarpRenderer

__all__ = ["WarpRenderer"]
