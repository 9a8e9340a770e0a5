"""Code that runs inside the pipeline's components (Transform, Trainer, custom components)."""
