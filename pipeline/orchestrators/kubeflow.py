"""Kubeflow Pipelines v2 and Vertex AI Pipelines: the graph compiled to a pipeline spec.

``compile_pipeline(config)`` writes the JSON ``PipelineJob`` that ``kfp`` 2 clients upload
and Vertex AI's ``PipelineJob(template_path=...)`` submits. Nothing runs here. Every
component runs in ``config.run.image``, built from the Dockerfile, which holds the project
at ``IMAGE_REPO_DIR`` with the curated schemas staged the way ``stage_schema`` does it, so
the spec names the schema by its content hash: an image older than the schema fails in
ImportSchemaGen with "file not found" instead of validating against a stale schema.

Runtime parameters, settable when a run is submitted:
  ``data_root``   the CSV directory (default: ``data.root``, mapped into the image when it
                  lies inside the repository, i.e. the bundled sample);
  ``train_args``  TFX's ``TrainArgs`` as JSON (default ``{"num_steps": training.train_steps}``).
                  KFP v2 passes only whole component parameters, not a field inside one, so
                  the training steps travel as the Trainer's ``train_args``.
Nothing is written at compile time except the spec: no schema staging, no module wheel
(the code is in the image), so the pipeline root may be gs:// without credentials here.
Nothing of the compiling machine's data goes into the spec either: the AnomalyGate checks
the files ExampleGen read against ExampleGen's own record of them (components/input_files.py).
``image_root`` (default ``IMAGE_REPO_DIR``, the Dockerfile's WORKDIR) is where the image
holds the repository; tests/test_kubeflow_run.py compiles for a local copy and runs the spec.
"""
import json
import os

from pipeline.config import ConfigError, PipelineConfig

IMAGE_REPO_DIR = '/pipeline'   # WORKDIR of the Dockerfile
DATA_ROOT = 'data_root'
TRAIN_ARGS = 'train_args'


def in_image(path: str, config: PipelineConfig, image_root: str = IMAGE_REPO_DIR) -> str:
    """A URI unchanged; a path inside the repository as the image sees it (the config check
    refuses a path outside it)."""
    if '://' in path:
        return path
    return os.path.join(image_root, os.path.relpath(path, config.base_dir))


def runtime_parameters(config: PipelineConfig, image_root: str = IMAGE_REPO_DIR):
    """{name: RuntimeParameter}, with the config's values as defaults."""
    from tfx import v1 as tfx

    return {
        DATA_ROOT: tfx.dsl.experimental.RuntimeParameter(
            name=DATA_ROOT, ptype=str,
            default=in_image(config.data.root, config, image_root)),
        TRAIN_ARGS: tfx.dsl.experimental.RuntimeParameter(
            name=TRAIN_ARGS, ptype=str,
            default=json.dumps({'num_steps': config.training.train_steps})),
    }


def build(config: PipelineConfig, parameters=None, image_root: str = IMAGE_REPO_DIR):
    """The TFX pipeline as it runs on Kubeflow: ``create_pipeline`` with runtime parameters."""
    from pipeline.inputs import resolve
    from pipeline.pipeline import create_pipeline

    parameters = parameters or runtime_parameters(config, image_root)
    return create_pipeline(config, resolve(config), data_root=parameters[DATA_ROOT],
                           train_args=parameters[TRAIN_ARGS], image_root=image_root)


def compile_pipeline(config: PipelineConfig, image_root: str = IMAGE_REPO_DIR) -> str:
    """Writes the pipeline spec to ``config.run.kfp_output``; returns its path.

    ``.json``: the ``PipelineJob`` (Vertex AI's ``template_path``; the runtime parameters'
    defaults in ``runtimeConfig``). ``.yaml``: the bare ``PipelineSpec`` that the KFP 2 UI
    and ``kfp.Client().upload_pipeline`` take. Both carry the defaults in the root's
    ``inputDefinitions`` (``defaultValue``), so a submission may leave them out.
    ``image_root``: where the image holds the repository (the Dockerfile's ``WORKDIR``).
    """
    from pipeline import spans

    # Before TensorFlow loads: a refusal should take a moment.
    if len(spans.window(config.data.root, config.data.spans)) > 1:
        raise ConfigError(f'data.spans: {config.data.spans} spans cannot be trained on with the '
                          'kubeflow runner: TFX 1.15 compiles a KFP v2 spec only for components '
                          'that take one channel, not the union of several spans\' examples; '
                          'expected data.spans: 1 (the newest span; drift against the previous '
                          'one still works)')
    import yaml
    from tfx import v1 as tfx
    from tfx.dsl.io import fileio

    parameters = runtime_parameters(config, image_root)
    defaults = {name: p.default for name, p in parameters.items()}
    tfx_pipeline = build(config, parameters, image_root)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=config.run.image, use_pipeline_spec_2_1=True))
    job = runner.run(tfx_pipeline, parameter_values=defaults, write_out=False)
    for name, parameter in job['pipelineSpec']['root']['inputDefinitions']['parameters'].items():
        parameter['defaultValue'] = defaults[name]
    output = config.run.kfp_output
    fileio.makedirs(os.path.dirname(output) or '.')
    with fileio.open(output, 'w') as f:
        if output.endswith(('.yaml', '.yml')):
            yaml.safe_dump(job['pipelineSpec'], f, sort_keys=True)
        else:
            json.dump(job, f, indent=1, sort_keys=True)
    return output
