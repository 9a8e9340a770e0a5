"""Tuner: TFX's Tuner component with KerasTuner, searching the generic model's
hyperparameters (``search.tuner_fn``) under a wall-time cap, recording every trial."""
