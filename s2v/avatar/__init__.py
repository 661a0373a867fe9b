"""Photo in, avatar out: framing, landmarks and the rig the renderer animates."""

from s2v.avatar.prepare import Avatar, AvatarConfig, AvatarError, avatar_id, prepare_avatar
from s2v.avatar.store import AvatarStore

__all__ = ["Avatar", "AvatarConfig", "AvatarError", "AvatarStore", "avatar_id", "prepare_avatar"]
