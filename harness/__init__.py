"""lstm-harness: run one trained LSTMPredictor through many inference backends,
prove they agree with a float64 reference, and time them honestly."""

__version__ = "0.1.0"
