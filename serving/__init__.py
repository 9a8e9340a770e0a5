"""A model server that speaks TensorFlow Serving's REST and gRPC APIs.

It serves the SavedModel versions the pipeline pushes (`<serving_dir>/<version>/`), picks up
new versions without a restart, and batches concurrent requests. Entry point:
`serving.server.main(argv)` or `python -m serving --serving-dir DIR --model-name NAME`.
"""
