# The image every component runs in on Kubeflow Pipelines v2 / Vertex AI Pipelines
# (--runner kubeflow --image <this image>). See docs/orchestrators.md.
#
#   docker build -t gcr.io/PROJECT/taxi-pipeline:$(git rev-parse --short HEAD) .
#
# Tag it with something that changes with the code (the commit): KFP's cache key includes
# the image, so a new tag re-runs what the new code could change.
#
# tests/test_kubeflow_run.py lays out this image's WORKDIR from the COPY and RUN lines below
# (tests/kfp_launcher.py, build_image) and runs the compiled spec in it: a file the
# components need and the image lacks fails that test.
FROM python:3.10-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /pipeline

# Dependencies first (the slow layer), exactly as locked, with their bytecode compiled (uv
# does not by default, and PYTHONDONTWRITEBYTECODE would make every component's container
# compile TFX's modules again on start); then the project.
COPY requirements.lock .
RUN pip install --no-cache-dir uv==0.13.9 \
 && uv pip install --system --no-cache --compile-bytecode -r requirements.lock
COPY setup.py pipeline_runner.py ./
COPY pipeline pipeline
COPY components components
COPY serving serving
COPY configs configs
COPY schemas schemas
COPY data data
RUN uv pip install --system --no-cache --no-deps -e .

# The curated schemas, staged under /pipeline/_schemas/<content hash>/ exactly as
# pipeline.schema.stage_schema does under a pipeline root: the compiled spec names the
# schema by its hash, so a spec compiled from an edited schema fails on an older image
# instead of validating with the stale one.
RUN python -c "import glob; from pipeline.schema import stage_schema; \
[print(stage_schema(p, '/pipeline')) for p in sorted(glob.glob('schemas/*/schema.pbtxt'))]"

# KubeflowV2DagRunner sets the command (python -m tfx...kubeflow_v2_run_executor).
ENV PYTHONPATH=/pipeline
