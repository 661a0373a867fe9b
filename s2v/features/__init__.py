"""Audio features: the streaming log-mel front end shared by training and the exported graph."""

from s2v.features.mel import LogMel, mel_filterbank

__all__ = ["LogMel", "mel_filterbank"]
