"""Global motion (head pose, blinks) that the audio does not decide: idle life and prompt steering."""
