"""Speech audio -> mouth motion: the viseme targets it learns from, phone alignments, and the streaming
network (torch, training and export only: import `s2v.motion.network` where torch is installed)."""
