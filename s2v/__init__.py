"""s2v: a real-time speech-to-video avatar model and its streaming generator.

Data path: audio in -> features -> motion -> render -> frames (with their audio) out.
"""

__version__ = "0.1.0"
