"""Audio in: decoding files and converting PCM to the model's 16 kHz mono."""
