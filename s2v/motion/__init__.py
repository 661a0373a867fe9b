"""Speech audio -> mouth motion: the viseme targets it learns from and the streaming network."""

from s2v.motion.network import MotionNet, MotionNetConfig

__all__ = ["MotionNet", "MotionNetConfig"]
