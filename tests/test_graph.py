"""The component graph as ``create_pipeline(config, inputs)`` builds it (no component runs).

How an edit re-runs the components that run the edited code, in ML Metadata, is
tests/test_code_cache.py; here, which code each component's key holds.
"""
import dataclasses
import json
import os
import shutil
import sys

import pytest

from pipeline.config import load_config
from pipeline.inputs import resolve
from pipeline.pipeline import CODE_DIGEST, SETUP_FILE, beam_args, create_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs', 'taxi.yaml')


def nodes(config, inputs=None):
    return {c.id: c for c in create_pipeline(config, inputs or resolve(config)).components}


def test_built_in_modules_are_imported_by_path(tmp_path):
    config = load_config(CONFIG, [f'paths.pipeline_root={tmp_path}/p',
                                  f'paths.metadata={tmp_path}/m.sqlite'])
    graph = nodes(config)
    transform, trainer = graph['Transform'].exec_properties, graph['Trainer'].exec_properties
    # No wheel of the module to build and pip-install in each component.
    assert transform['preprocessing_fn'] == 'components.transform.preprocessing_fn'
    assert transform.get('module_file') is None
    assert trainer['run_fn'] == 'components.trainer.run_fn'
    # The custom_config holds what the code reads, not the key's digest.
    assert set(json.loads(transform['custom_config'])) == {'features'}


def test_a_custom_module_stays_a_module_file(tmp_path):
    module = tmp_path / 'my_transform.py'
    module.write_text('def preprocessing_fn(inputs, custom_config):\n    return inputs\n')
    config = load_config(CONFIG, [f'modules.transform={module}', 'training.trainer=estimator',
                                  f'paths.pipeline_root={tmp_path}/p'])
    graph = nodes(config)
    assert graph['Transform'].exec_properties['module_file'] == str(module)
    assert graph['Trainer'].exec_properties['run_fn'] == 'components.estimator_trainer.run_fn'


def keys(graph):
    return {node: c.exec_properties.get(CODE_DIGEST) for node, c in graph.items()}


@pytest.fixture
def repo_copy(tmp_path):
    """The repository's code in a temporary directory, to edit, and two spans of data."""
    copy = tmp_path / 'repo'
    for part in ('components', 'pipeline', 'configs', 'schemas'):
        shutil.copytree(os.path.join(REPO, part), copy / part,
                        ignore=shutil.ignore_patterns('__pycache__'))
    for span in (1, 2):
        os.makedirs(copy / 'data' / 'taxi' / f'span-{span}')
        shutil.copy(os.path.join(REPO, 'data', 'taxi', 'data.csv'),
                    copy / 'data' / 'taxi' / f'span-{span}' / 'data.csv')
    return copy


def test_each_components_key_follows_the_code_it_runs_and_only_that(repo_copy, tmp_path):
    """An edit changes the keys of exactly the components whose executor (or module, or
    metric module) imports the edited file, directly or not."""
    from pipeline import code_digest

    config = load_config(str(repo_copy / 'configs' / 'taxi.yaml'),
                         [f'paths.pipeline_root={tmp_path}/p', 'validation.drift.default_js=0.5'])
    inputs = resolve(config)

    def graph_keys():
        code = code_digest.module_digests(repo=str(repo_copy))
        return keys(nodes(config, dataclasses.replace(inputs, code=code)))

    before = graph_keys()
    # The library-only components carry no code digest; every other one does.
    assert {n for n, k in before.items() if k} == {
        'CsvExampleGen', 'ExampleGen_span1', 'StatisticsGen', 'StatisticsGen_span1',
        'DriftCheck', 'AnomalyGate', 'Transform', 'Trainer', 'Evaluator', 'Pusher'}
    for path, changed in [
            ('components/fast_csv_example_gen/executor.py', {'CsvExampleGen', 'ExampleGen_span1'}),
            ('components/fast_statistics_gen/executor.py', {'StatisticsGen', 'StatisticsGen_span1'}),
            ('components/drift/executor.py', {'DriftCheck'}),
            ('components/anomaly_gate/executor.py', {'AnomalyGate'}),
            # imported by the gate, and by ExampleGen, which records the files it reads
            ('components/input_files.py', {'AnomalyGate', 'CsvExampleGen', 'ExampleGen_span1'}),
            ('components/csv_format.py', {'CsvExampleGen', 'ExampleGen_span1'}),
            ('components/pusher/executor.py', {'Pusher'}),
            ('components/model_versions.py', {'Pusher'}),           # imported by the Pusher
            ('components/metrics.py', {'Evaluator'}),               # TFMA imports it
            ('components/fast_evaluator/executor.py', {'Evaluator'}),
            ('components/fast_evaluator/in_memory.py', {'Evaluator'}),  # the executor's
            ('components/model.py', {'Trainer'}),                   # via components.trainer
            # the plan; the trivial baseline's names the Evaluator's metrics import; the
            # signature names the Pusher's warmup requests use
            ('components/features.py', {'Transform', 'Trainer', 'Evaluator', 'Pusher'}),
            ('components/warmup.py', {'Pusher'}),
            # and the serving signatures' date check (the trainer's export; the Pusher's
            # warmup takes the signature names from the same module)
            ('components/transform.py', {'Transform', 'Trainer', 'Pusher'}),
            ('components/estimator_trainer.py', set()),             # the keras trainer runs
            # the keras trainer's strategies, tuned values and training record
            ('components/distribute.py', {'Trainer'}),
            ('components/hyperparameters.py', {'Trainer'}),
            ('components/training_record.py', {'Trainer'}),
            ('components/tuner/search.py', set()),                  # tuning is off
            ('components/gbt_trainer.py', set()),
            ('components/baseline.py', set()),                      # a resolver: no cache
            ('pipeline/report.py', set())]:
        with open(repo_copy / path, 'a', encoding='utf-8') as f:
            f.write('\n# edited\n')
        after = graph_keys()
        assert {n for n in after if after[n] != before[n]} == changed, path
        before = after


def test_a_custom_modules_key_follows_its_own_imports(tmp_path):
    from pipeline import code_digest

    (tmp_path / 'helpers.py').write_text('SCALE = 1.0\n')
    module = tmp_path / 'my_transform.py'
    module.write_text('from helpers import SCALE\nfrom components.features import FeaturePlan\n'
                      'def preprocessing_fn(inputs, custom_config):\n    return inputs\n')
    before = code_digest.file_digest(str(module))
    (tmp_path / 'helpers.py').write_text('SCALE = 2.0\n')
    assert code_digest.file_digest(str(module)) != before


def test_the_graph_is_built_without_reading_or_writing_anything(tmp_path):
    """From the resolved inputs alone: with the data and the schema gone, and every file
    access outside the installed libraries recorded (the project's code included)."""
    data = tmp_path / 'data'
    shutil.copytree(os.path.join(REPO, 'data', 'taxi'), data)
    schema = tmp_path / 'schema.pbtxt'
    shutil.copy(os.path.join(REPO, 'schemas', 'taxi', 'schema.pbtxt'), schema)
    config = load_config(CONFIG, [f'data.root={data}', f'data.schema={schema}',
                                  f'paths.pipeline_root={tmp_path}/p'])
    inputs = resolve(config)
    create_pipeline(config, inputs)  # imports what graph building imports, once
    shutil.rmtree(data)
    os.remove(schema)

    touched = []
    watching = [True]

    def audit(event, args):
        if not watching[0] or event not in ('open', 'os.listdir', 'os.scandir', 'os.mkdir',
                                            'os.rename', 'os.remove', 'os.rmdir', 'shutil.copyfile'):
            return
        path = str(args[0]) if args else ''
        if not path.startswith((sys.prefix, sys.base_prefix)):  # libraries' own files only
            touched.append((event, path))

    sys.addaudithook(audit)
    try:
        graph = create_pipeline(config, inputs)
    finally:
        watching[0] = False
    assert touched == []
    assert len(graph.components) == 11
    [schema_gen] = [c for c in graph.components if c.id == 'ImportSchemaGen']
    assert schema_gen.exec_properties['schema_file'] == inputs.schema.staged
    assert not os.path.exists(inputs.schema.staged)  # staged by the run, not by the graph


def test_beam_workers_get_this_package_unless_told_otherwise():
    config = load_config(CONFIG)
    assert f'--setup_file={SETUP_FILE}' in beam_args(config)
    own = load_config(CONFIG, ['run.beam_args=[--extra_package=/tmp/x.tar.gz]'])
    assert not [a for a in beam_args(own) if a.startswith('--setup_file')]
    assert beam_args(config, image_root='/pipeline')[-1] == '--setup_file=/pipeline/setup.py'


def test_the_keras_trainer_transforms_raw_examples_and_transform_writes_no_copy(tmp_path):
    paths = [f'paths.pipeline_root={tmp_path}/p', f'paths.metadata={tmp_path}/m.sqlite']
    keras = nodes(load_config(CONFIG, paths))
    assert keras['Trainer'].inputs['examples'].producer_component_id == 'CsvExampleGen'
    assert 'transformed_examples' not in keras['Transform'].outputs
    assert json.loads(keras['Trainer'].exec_properties['custom_config'])['materialized'] is False
    # The estimator trainer reads Transform's transformed examples.
    estimator = nodes(load_config(CONFIG, paths + ['training.trainer=estimator']))
    assert estimator['Trainer'].inputs['examples'].producer_component_id == 'Transform'
    assert json.loads(estimator['Trainer'].exec_properties['custom_config'])['materialized'] is True


def test_tuning_puts_the_tuner_before_the_trainer_and_reuse_an_importer(tmp_path):
    """tuning.trials: TFX's Tuner on the Trainer's input, its winner the Trainer's
    hyperparameters, its key holding the search's code; tuning.reuse: an Importer instead.
    Off (the default): neither, and KerasTuner is not needed to build the graph."""
    base = [f'paths.pipeline_root={tmp_path}/p', f'paths.metadata={tmp_path}/m.sqlite']
    assert not {'Tuner', 'TuningResultsImporter'} & set(nodes(load_config(CONFIG, base)))
    graph = nodes(load_config(CONFIG, base + ['tuning.trials=3']))
    tuner, trainer = graph['Tuner'], graph['Trainer']
    assert tuner.exec_properties['tuner_fn'] == 'components.tuner.search.tuner_fn'
    assert json.loads(tuner.exec_properties['custom_config'])['tuning']['trials'] == 3
    assert trainer.inputs['hyperparameters'].producer_component_id == 'Tuner'
    assert trainer.inputs['examples'].producer_component_id == tuner.inputs[
        'examples'].producer_component_id
    assert tuner.exec_properties[CODE_DIGEST]
    results = tmp_path / 'best'
    results.mkdir()
    (results / 'best_hyperparameters.txt').write_text('{"values": {"hidden_units": 32}}')
    graph = nodes(load_config(CONFIG, base + [f'tuning.reuse={results}']))
    assert 'Tuner' not in graph
    importer = graph['TuningResultsImporter']
    assert importer.exec_properties['artifact_uri'] == str(results)
    assert graph['Trainer'].inputs['hyperparameters'].producer_component_id == importer.id
