"""``create_pipeline(config, inputs)``: the component graph, written once for every orchestrator.

It reads nothing and writes nothing: what it needs from disk (the spans, the files, the
schema, the feature plan, the code's digests) was resolved before, once, into ``inputs``
(``pipeline/inputs.py``). The same config and inputs give the same graph, wherever and
however often it is built.
"""
import dataclasses
import json
import os
from typing import List, Optional, Union

# TFX's modules, not ``tfx.v1``: importing that loads its Google Cloud extensions
# (google.cloud.aiplatform), ~12 s of every run's start-up on this machine.
from tfx.components import ExampleValidator, SchemaGen, Trainer, Transform
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import base_node
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy)
from tfx.orchestration import metadata
from tfx.orchestration.data_types import RuntimeParameter
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import example_gen_pb2, pusher_pb2, trainer_pb2
from tfx.types import channel_utils, standard_artifacts
from tfx.types.channel import Channel

import components
from components import hyperparameters
from components.anomaly_gate import AnomalyGate
from components.baseline import BaselineModelStrategy
from components.drift import DriftCheck
from components.fast_csv_example_gen import FastCsvExampleGen
from components.fast_evaluator import FastEvaluator
from components.fast_statistics_gen import FastStatisticsGen
from components.bulk_inferrer import BulkInferrer
from components.infra_validator import InfraValidator
from components.pusher.component import Pusher
from components.tflite_export import TFLiteExport
from pipeline import beam_workers, code_digest, spans
from pipeline.config import PipelineConfig
from pipeline.evaluation import build_eval_config
from pipeline.inputs import RunInputs
from pipeline.schema import staged_path

COMPONENTS_DIR = os.path.dirname(os.path.abspath(components.__file__))
TRANSFORM_MODULE = os.path.join(COMPONENTS_DIR, 'transform.py')
TRAINER_MODULES = {'keras': os.path.join(COMPONENTS_DIR, 'trainer.py'),
                   'estimator': os.path.join(COMPONENTS_DIR, 'estimator_trainer.py'),
                   'gbt': os.path.join(COMPONENTS_DIR, 'gbt_trainer.py')}

# Beam defaults that suit a small machine: one in-process worker, no multi-process start-up.
# cloudpickle rather than Beam 2.56's default, dill, to serialize the ~3,000 DoFns and
# combiners a run builds: half the time (3.7 -> 1.6 s of a 12k run), as dill resets the
# logging cache on every call (docs/performance.md). Beam supports both on every runner.
DEFAULT_BEAM_ARGS = ('--direct_running_mode=in_memory', '--direct_num_workers=1',
                     '--pickle_library=cloudpickle')
# How Beam workers get this code when none of these is given: ``--setup_file`` with this
# repository's setup.py (remote runners install it, and TFX through it). Without one, TFX
# builds an sdist of itself before every Beam component (~2.5 s each, needed by no runner
# that has TFX installed); the in-process runner stages nothing either way.
DEPENDENCY_FLAGS = ('--setup_file', '--extra_package', '--extra_packages', '--requirements_file',
                    '--sdk_container_image', '--worker_harness_container_image')
SETUP_FILE = os.path.join(os.path.dirname(COMPONENTS_DIR), 'setup.py')


def beam_args(config: PipelineConfig, image_root: str = '') -> List:
    """The defaults, then the config's (and the command line's) arguments, which win.

    With ``run.beam_workers``, the arguments that send every job to the run's worker pool
    (``pipeline.beam_workers.beam_args``: the pool's addresses are placeholders, resolved
    while the run goes)."""
    given = {a.split('=', 1)[0] for a in config.run.beam_args}
    defaults = list(DEFAULT_BEAM_ARGS) + (beam_workers.beam_args() if config.run.beam_workers
                                          else [])
    if not given & set(DEPENDENCY_FLAGS):
        setup_file = os.path.join(image_root, 'setup.py') if image_root else SETUP_FILE
        defaults.append(f'--setup_file={setup_file}')
    return [a for a in defaults if not isinstance(a, str) or a.split('=', 1)[0] not in given
            ] + list(config.run.beam_args)


# Above this many rows (estimated from the CSV files' size), StatisticsGen computes its
# statistics on a uniform sample of about this many rows (TFDV's StatsOptions.sample_rate),
# with Beam. Validation then sees every column and its distribution, but can miss a value
# that occurs in fewer than ~1 in STATS_SAMPLE_ROWS rows. Up to it, every row.
STATS_SAMPLE_ROWS = 200_000


def statistics_options(rows: int, in_memory_rows: int = STATS_SAMPLE_ROWS):
    """None (every row, in memory: components/fast_statistics_gen) up to ``in_memory_rows``
    rows (``run.in_memory_rows``); TFDV's options otherwise, which send the statistics to
    Beam: a sample above STATS_SAMPLE_ROWS rows, every row below."""
    if rows <= in_memory_rows:
        return None
    import tensorflow_data_validation as tfdv
    if rows <= STATS_SAMPLE_ROWS:
        return tfdv.StatsOptions()
    return tfdv.StatsOptions(sample_rate=round(STATS_SAMPLE_ROWS / rows, 4))


# The exec property that carries the digest of the code a component's executor runs. TFX's
# caches key on every exec property: the portable launcher (local and Beam runners) hashes
# them all into the cache context (tfx/orchestration/portable/cache_utils.py), the legacy
# launcher matches them (tfx/orchestration/metadata.py, get_cached_outputs), and Kubeflow
# keys a task on its input parameters. TFX's own key names the executor by class path, and
# Transform's and the Trainer's functions by import path, never by their code.
CODE_DIGEST = 'code_digest'


def keyed_on_code(node: base_node.BaseNode, inputs: RunInputs, *modules: str):
    """``node`` with the digest of the project code it runs in its exec properties.

    That code is its executor's module, when it is one of the project's, and ``modules``
    (the module a Transform or Trainer function lives in, a custom module file, the
    Evaluator's metric modules), each with the project modules it imports
    (``pipeline/code_digest.py``). A node that runs only library code is left as it is.
    """
    executor = getattr(node.executor_spec, 'class_path', '').rpartition('.')[0]
    keys = sorted({executor} & set(inputs.code) | set(modules))
    if keys:
        node.exec_properties[CODE_DIGEST] = (
            inputs.code[keys[0]] if len(keys) == 1
            else code_digest.combined(inputs.code[k] for k in keys))
    return node


def materialize_transform(config: PipelineConfig) -> bool:
    """Whether Transform writes the transformed examples for the Trainer.

    The built-in Keras and gbt trainers read the raw examples and apply the TFT graph in
    their tf.data input (``components/trainer.py``), so no transformed copy is written: that copy
    is a Beam pass that encodes and writes every row, ~60% of Transform's time at 1M rows,
    while applying the graph in the Trainer costs about as much as reading the copy back
    (benchmarks/RESULTS.md). The estimator trainer and custom trainer modules get
    transformed examples, as TFX's Trainer usually does; so switching between the Keras and
    the estimator trainer runs Transform again. ``training.distribute: parameter_server``
    reads them too: the TFT graph's lookup tables, loaded in the coordinator, are not
    initialized on the workers that run a parameter-server cluster's input functions.
    """
    return (config.training.trainer == 'estimator' or bool(config.modules.trainer)
            or config.training.distribute == 'parameter_server')


def union_of(channels: List[Channel]):
    """One channel as it is (the graph of a one-span run stays unchanged), several as their
    union."""
    return channels[0] if len(channels) == 1 else channel_utils.union(channels)


def image_module(path: str, repo_dir: str) -> str:
    """The dotted module name of a ``.py`` file in the repository (importable in the image;
    the config check refuses one outside it)."""
    return os.path.relpath(path, repo_dir)[:-3].replace(os.sep, '.')


# The Tuner's search function (components/tuner/search.py), by import path as the Trainer's.
TUNER_FN = 'components.tuner.search.tuner_fn'


def tuning_node(config: PipelineConfig, inputs: RunInputs, examples, transform, schema_gen,
                custom_config):
    """The node whose output is the Trainer's ``hyperparameters`` input, or None (tuning off).

    ``tuning.reuse``: an Importer of earlier results (``inputs.tuning_reuse``, the
    directory of a ``best_hyperparameters`` artifact), as TFX's penguin example does.
    ``tuning.trials``: TFX's Tuner running the generic KerasTuner search
    (``components/tuner``) on the Trainer's input, for ``tuning.train_steps`` steps a trial.
    Its cache key holds the data, the schema, the transform graph, the search (space,
    algorithm, budget, objective), the training settings the search reads
    (``hyperparameters.SEARCH_READS``, not the whole section) and the search's code, so a
    rerun with none of them changed is cached. Imported here: KerasTuner loads only when
    tuning is on.
    """
    tuning = config.tuning
    if tuning.reuse:
        from tfx.dsl.components.common.importer import Importer
        return Importer(source_uri=inputs.tuning_reuse,
                        artifact_type=standard_artifacts.HyperParameters
                        ).with_id('TuningResultsImporter')
    if not tuning.trials:
        return None
    from components.tuner.component import Tuner
    search = dataclasses.asdict(tuning)
    del search['reuse']
    tuner = Tuner(
        examples=examples, transform_graph=transform.outputs['transform_graph'],
        schema=schema_gen.outputs['schema'], tuner_fn=TUNER_FN,
        train_args=trainer_pb2.TrainArgs(
            num_steps=tuning.train_steps or config.training.train_steps),
        eval_args=trainer_pb2.EvalArgs(num_steps=config.training.eval_steps),
        custom_config=dict(custom_config, tuning=search, training={
            k: custom_config['training'][k] for k in hyperparameters.SEARCH_READS}))
    return keyed_on_code(tuner, inputs, TUNER_FN.rpartition('.')[0])


def create_pipeline(config: PipelineConfig, inputs: RunInputs, *,
                    data_root: Optional[Union[str, RuntimeParameter]] = None,
                    train_args: Optional[Union[trainer_pb2.TrainArgs,
                                               RuntimeParameter]] = None,
                    image_root: str = '') -> Pipeline:
    """The graph of ``config`` on ``inputs`` (``pipeline.inputs.resolve(config)``).

    The keyword arguments are for orchestrators that run it elsewhere. ``data_root`` and
    ``train_args`` replace ``data.root`` and ``training.train_steps``, e.g. with
    ``RuntimeParameter``s set when a run is submitted (Kubeflow). With ``image_root``
    the components run in the image the Dockerfile builds, whose repository copy is at
    ``image_root``: the code is named by module path (no wheel is built and uploaded when
    compiling), the schema is the copy staged in the image, and the baseline is TFX's
    ``LatestBlessedModelStrategy`` (Kubeflow v2 compiles only TFX's own two resolver
    strategies; there each run resolves it before training, so it never is the candidate).
    Without them the graph is the local one, unchanged.
    """
    plan = inputs.plan
    custom_config = {'features': plan.to_dict(),
                     'training': dataclasses.asdict(config.training)}
    train_buckets, eval_buckets = config.data.split

    output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name='train', hash_buckets=train_buckets),
        example_gen_pb2.SplitConfig.Split(name='eval', hash_buckets=eval_buckets)]))
    root = config.data.root
    stats_options = statistics_options(inputs.rows, config.run.in_memory_rows)

    def read_span(span: Optional[int], example_gen_id: str, statistics_id: str,
                  input_base: Union[str, RuntimeParameter] = root):
        """ExampleGen + StatisticsGen of one span (pipeline/spans.py; None: the flat root).
        CsvExampleGen's artifact, read with pyarrow instead of Beam
        (components/fast_csv_example_gen), and StatisticsGen's, computed in memory up to
        STATS_SAMPLE_ROWS rows (components/fast_statistics_gen)."""
        input_config, range_config = spans.example_gen_config(span)
        gen = FastCsvExampleGen(
            input_base=input_base, input_config=input_config, range_config=range_config,
            output_config=output_config, csv_format=inputs.csv_format,
            label=config.data.label).with_id(example_gen_id)
        return (keyed_on_code(gen, inputs),
                keyed_on_code(FastStatisticsGen(examples=gen.outputs['examples'],
                                                stats_options=stats_options
                                                ).with_id(statistics_id), inputs))

    # The newest span; the nodes keep CsvExampleGen's and StatisticsGen's ids.
    example_gen, statistics_gen = read_span(inputs.newest_span, 'CsvExampleGen', 'StatisticsGen',
                                            root if data_root is None else data_root)
    # The inferred schema is kept beside the curated one, to compare them (README, "Schemas").
    inferred_schema = SchemaGen(
        statistics=statistics_gen.outputs['statistics'], infer_feature_shape=False
    ).with_id('InferredSchemaGen')
    schema_gen = ImportSchemaGen(schema_file=(
        staged_path(inputs.schema.digest, image_root) if image_root else inputs.schema.staged))
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'])

    # Older spans: those trained on (data.spans > 1), and the previous one when drift is
    # checked. Each has its own ExampleGen and StatisticsGen, and, if trained on, its own
    # ExampleValidator through the gate. Their ids carry the span number, so a span read in
    # one run is served from the cache in the next, whichever position it has now.
    window = list(inputs.spans[:-1])
    drift_span = inputs.drift_span
    older = sorted(set(window) | ({drift_span} if drift_span is not None else set()))
    span_nodes, span_stats, span_examples = [], {}, {}
    train_examples = [example_gen.outputs['examples']]
    anomalies = [example_validator.outputs['anomalies']]
    for span in older:
        gen, stats = read_span(span, f'ExampleGen_span{span}', f'StatisticsGen_span{span}')
        span_nodes += [gen, stats]
        span_stats[span] = stats
        span_examples[span] = gen.outputs['examples']
        if span in window:
            validator = ExampleValidator(
                statistics=stats.outputs['statistics'], schema=schema_gen.outputs['schema'],
            ).with_id(f'ExampleValidator_span{span}')
            span_nodes.append(validator)
            train_examples.append(gen.outputs['examples'])
            anomalies.append(validator.outputs['anomalies'])
    drift_check = None
    if drift_span is not None:
        # The newest span against the previous one (components/drift).
        drift_check = keyed_on_code(DriftCheck(
            statistics=statistics_gen.outputs['statistics'],
            previous_statistics=span_stats[drift_span].outputs['statistics'],
            schema=schema_gen.outputs['schema'],
            thresholds=json.dumps(dataclasses.asdict(config.validation.drift), sort_keys=True)),
            inputs)
        span_nodes.append(drift_check)
    anomaly_gate = keyed_on_code(AnomalyGate(
        anomalies=union_of(anomalies),
        on_anomalies=config.validation.on_anomalies,
        drift=drift_check.outputs['anomalies'] if drift_check else None,
        # The files each ExampleGen read, as recorded on its examples, against the
        # preflight's fingerprints of this machine's files: only where the components run on
        # this machine (in the image, the gate checks ExampleGen's records alone).
        examples=union_of(train_examples),
        drift_examples=None if drift_span in window else span_examples.get(drift_span),
        input_files=None if image_root else inputs.fingerprints), inputs)

    transform_module = config.modules.transform or TRANSFORM_MODULE
    trainer_module = config.modules.trainer or TRAINER_MODULES[config.training.trainer]
    # By import path: in the image (Kubeflow), and for the built-in modules, which are part
    # of this installed package (pip install -e .; --setup_file ships it to Beam workers).
    # A module file instead makes TFX build a wheel of its directory and pip-install it in
    # each component that uses it (~4 s per install). Custom modules stay module files.
    # Either way the cache key holds the digest of the module's code (and of what it
    # imports): TFX's own keys on the function's path, or on the module file alone.
    # A built-in module is named in this package; a custom one in the config's repository.
    code, code_key = {}, {}
    for part, module, custom, fn in (('transform', transform_module, config.modules.transform,
                                      'preprocessing_fn'),
                                     ('trainer', trainer_module, config.modules.trainer, 'run_fn')):
        package_root = config.base_dir if custom else os.path.dirname(COMPONENTS_DIR)
        code[part] = ({fn: image_module(module, package_root) + '.' + fn}
                      if image_root or not custom else dict(module_file=module))
        code_key[part] = module if custom else image_module(module, os.path.dirname(COMPONENTS_DIR))
    materialize = materialize_transform(config)
    transform = keyed_on_code(Transform(
        # Every span trained on, analyzed together (and, when materialized, one transformed
        # artifact each).
        examples=union_of(train_examples),
        schema=schema_gen.outputs['schema'],
        # Only the features: a training setting (the trainer, the steps) must not make
        # Transform run again.
        custom_config={'features': custom_config['features']},
        # Its pre-/post-transform statistics would repeat StatisticsGen's work; nothing reads them.
        disable_statistics=True,
        # Nothing feeds an analyzer cache back into a later Transform, so writing one (a
        # Beam sink per analyzer) is pure cost.
        disable_analyzer_cache=True,
        materialize=materialize,
        # The built-in module traces as a TF1 graph: TFT traces preprocessing_fn 5 times
        # instead of 9, each faster, for the same transform graph (docs/performance.md).
        # A custom module keeps TFX's default, TF2 tracing, which it may rely on.
        force_tf_compat_v1=not config.modules.transform,
        **code['transform']), inputs, code_key['transform'])
    transform.add_upstream_node(anomaly_gate)

    # Warm start (estimator trainer): from the latest blessed model, whichever trainer made
    # it. A resolver of its own: BaselineModelResolver depends on the trainer's output.
    warm_start = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id('WarmStartModelResolver') if config.training.warm_start else None

    training_examples = (transform.outputs['transformed_examples'] if materialize
                         else union_of(train_examples))
    tuner = tuning_node(config, inputs, training_examples, transform, schema_gen,
                        dict(custom_config, materialized=materialize))

    trainer = Trainer(
        examples=training_examples,
        transform_graph=transform.outputs['transform_graph'],
        schema=schema_gen.outputs['schema'],
        train_args=(trainer_pb2.TrainArgs(num_steps=config.training.train_steps)
                    if train_args is None else train_args),
        eval_args=trainer_pb2.EvalArgs(num_steps=config.training.eval_steps),
        custom_config=dict(custom_config, materialized=materialize),
        base_model=warm_start.outputs['model'] if warm_start else None,
        # The Tuner's winner, or earlier results imported (tuning.reuse).
        hyperparameters=tuner.outputs[
            'result' if config.tuning.reuse else 'best_hyperparameters'] if tuner else None,
        **code['trainer'])
    keyed_on_code(trainer, inputs, code_key['trainer'])

    previous = dict(model=Channel(type=standard_artifacts.Model),
                    model_blessing=Channel(type=standard_artifacts.ModelBlessing))
    if image_root:
        baseline = Resolver(strategy_class=LatestBlessedModelStrategy, **previous)
    else:
        baseline = Resolver(strategy_class=BaselineModelStrategy,
                            candidate=trainer.outputs['model'], **previous)
    baseline = baseline.with_id('BaselineModelResolver')

    # export.tflite: the SavedModel with assets.extra/model.tflite; then it is what is pushed.
    tflite = keyed_on_code(TFLiteExport(
        model=trainer.outputs['model'], examples=example_gen.outputs['examples'],
        quantization=config.export.tflite_quantization, tolerance=config.export.tolerance,
        num_examples=config.export.tflite_examples), inputs) if config.export.tflite else None
    # The newest span's eval split: the data nearest to what the model will serve, never
    # trained on, and the same rows for the candidate and the baseline. TFX's Evaluator, with
    # small eval splits evaluated in memory (components/fast_evaluator); the id stays.
    eval_config = build_eval_config(config, plan)
    evaluator = FastEvaluator(
        examples=example_gen.outputs['examples'],
        example_splits=['eval'],
        model=trainer.outputs['model'],
        baseline_model=baseline.outputs['model'],
        eval_config=eval_config,
        # export.tflite_gate: the TFLite model is evaluated and gated too.
        tflite_model=tflite.outputs['tflite_model'] if config.export.tflite_gate else None,
    ).with_id('Evaluator')
    # TFMA imports the modules of our metric classes (components/metrics.py) by name, and,
    # with tflite_gate, the TFLite extractor's module (the executor's TFLITE_EXTRACTORS).
    keyed_on_code(evaluator, inputs, *{m.module for spec in eval_config.metrics_specs
                                       for m in spec.metrics if m.module},
                  *(['components.tflite_export.evaluation'] if config.export.tflite_gate else []))

    to_push = tflite.outputs['exported_model'] if tflite else trainer.outputs['model']

    # Before the push: the candidate in a real model server (validation.infra; off by default).
    infra = config.validation.infra
    infra_validator = keyed_on_code(InfraValidator(
        model=to_push, examples=example_gen.outputs['examples'],
        model_blessing=evaluator.outputs['blessing'], model_name=config.name,
        num_examples=infra.examples, load_timeout_seconds=infra.load_timeout_seconds,
        require_tf_serving=infra.require_tf_serving), inputs) if infra.enabled else None

    pusher_component = Pusher(
        model=to_push,
        model_blessing=evaluator.outputs['blessing'],
        examples=example_gen.outputs['examples'],  # for the warmup file (eval split)
        infra_blessing=infra_validator.outputs['blessing'] if infra_validator else None,
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=config.paths.serving_dir)))
    keyed_on_code(pusher_component, inputs)

    # After the push: inference.infer_dir scored with the pushed model (off by default).
    inference = config.inference
    bulk_inferrer = keyed_on_code(BulkInferrer(
        pushed_model=pusher_component.outputs['pushed_model'], infer_dir=inference.infer_dir,
        features={f.name: f.dtype for f in plan.features},
        input_files={path: [size, mtime] for path, size, mtime in inputs.infer_files},
        csv=inputs.csv_format, output_format=inference.format, keep=inference.keep), inputs) if inference.infer_dir else None

    return Pipeline(
        pipeline_name=config.name,
        pipeline_root=config.paths.pipeline_root,
        components=[example_gen, statistics_gen, inferred_schema, schema_gen,
                    example_validator, *span_nodes, anomaly_gate, transform,
                    *([warm_start] if warm_start else []), *([tuner] if tuner else []),
                    trainer, baseline,
                    *([tflite] if tflite else []), evaluator,
                    *([infra_validator] if infra_validator else []),
                    pusher_component, *([bulk_inferrer] if bulk_inferrer else [])],
        enable_cache=True,
        metadata_connection_config=(
            metadata.sqlite_metadata_connection_config(config.paths.metadata)),
        beam_pipeline_args=beam_args(config, image_root))
