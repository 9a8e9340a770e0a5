"""The component graph as ``create_pipeline`` builds it (no component runs here)."""
import json
import os

from pipeline.config import load_config
from pipeline.fast_rerun import source_digest
from pipeline.pipeline import COMPONENTS_DIR, SETUP_FILE, beam_args, create_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs', 'taxi.yaml')


def nodes(config):
    return {c.id: c for c in create_pipeline(config).components}


def test_built_in_modules_are_imported_by_path_and_their_code_keys_the_cache(tmp_path):
    config = load_config(CONFIG, [f'paths.pipeline_root={tmp_path}/p',
                                  f'paths.metadata={tmp_path}/m.sqlite'])
    graph = nodes(config)
    transform, trainer = graph['Transform'].exec_properties, graph['Trainer'].exec_properties
    # No wheel of the module to build and pip-install in each component.
    assert transform['preprocessing_fn'] == 'components.transform.preprocessing_fn'
    assert transform.get('module_file') is None
    assert trainer['run_fn'] == 'components.trainer.run_fn'
    # TFX caches on the path; the code's digest makes an edit of components/ rerun them.
    digest = source_digest(COMPONENTS_DIR)
    assert json.loads(transform['custom_config'])['code'] == digest
    assert json.loads(trainer['custom_config'])['code'] == digest


def test_a_custom_module_stays_a_module_file(tmp_path):
    module = tmp_path / 'my_transform.py'
    module.write_text('def preprocessing_fn(inputs, custom_config):\n    return inputs\n')
    config = load_config(CONFIG, [f'modules.transform={module}', 'training.trainer=estimator',
                                  f'paths.pipeline_root={tmp_path}/p'])
    graph = nodes(config)
    assert graph['Transform'].exec_properties['module_file'] == str(module)
    assert graph['Trainer'].exec_properties['run_fn'] == 'components.estimator_trainer.run_fn'


def test_source_digest_follows_the_code(tmp_path):
    (tmp_path / 'a.py').write_text('x = 1\n')
    before = source_digest(str(tmp_path))
    (tmp_path / 'notes.txt').write_text('not code')
    assert source_digest(str(tmp_path)) == before
    (tmp_path / 'a.py').write_text('x = 2\n')
    assert source_digest(str(tmp_path)) != before


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
