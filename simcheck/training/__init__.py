"""Training with fresh data every step, resumable atomic checkpoints (`trainer`), and many
models of one architecture at once (`ensemble`)."""
