"""Training MotionNet on festival speech: corpus, augmentation, training loop, evaluation."""
