"""Infra validation in the real pipeline, on the end-to-end taxi run's store (conftest.taxi_e2e):
turning it on reuses every upstream output from the cache and runs only InfraValidator and
the Pusher, which pushes only what the model server answered for."""
import dataclasses
import os

import pytest

from pipeline.config import InfraConfig
from pipeline.report import render
from pipeline.run import run_pipeline


def with_infra(config, serving_dir, **infra):
    return config.replace(
        validation=dataclasses.replace(config.validation, infra=InfraConfig(enabled=True, **infra)),
        paths=dataclasses.replace(config.paths, serving_dir=serving_dir),
        run=dataclasses.replace(config.run, fast_rerun=False))


@pytest.fixture(scope='module')
def infra_runs(taxi_e2e, tmp_path_factory):
    config = taxi_e2e['config']
    root = tmp_path_factory.mktemp('infra_serving')
    passed = run_pipeline(with_infra(config, str(root / 'passed')))
    # The bound is far below what a server start takes: a model that does not load in time.
    slow = run_pipeline(with_infra(config, str(root / 'slow'), load_timeout_seconds=0.5))
    return {'passed': passed, 'slow': slow, 'root': root}


def states(summary):
    return {c['id']: c['state'] for c in summary['components']}


def test_a_model_the_server_answers_for_is_infra_blessed_and_pushed(infra_runs):
    summary = infra_runs['passed']
    assert summary['status'] == 'succeeded', summary.get('error')
    ran = states(summary)
    assert ran['InfraValidator'] == 'ran' and ran['Pusher'] == 'ran'
    assert ran['Trainer'] == 'cached' and ran['Evaluator'] == 'cached'
    infra = summary['infra_validation']
    assert infra['blessed'] is True and infra['reason'] is None
    assert infra['signatures'] == ['serving_default', 'serving_json', 'transform_features']
    assert summary['push']['pushed'] is True
    assert os.listdir(infra_runs['root'] / 'passed') == [summary['push']['version']]
    assert 'Infra validation: passed (the model server (python -m serving): 3 signatures ' \
           'over REST and gRPC, 10 examples' in render(summary)


def test_a_model_that_fails_infra_validation_pushes_nothing_and_the_summary_says_why(infra_runs):
    summary = infra_runs['slow']
    assert summary['status'] == 'succeeded' and summary['blessed'] is True
    assert summary['infra_validation']['blessed'] is False
    assert summary['push']['pushed'] is False
    assert not os.path.exists(infra_runs['root'] / 'slow') or not os.listdir(
        infra_runs['root'] / 'slow')
    text = render(summary)
    assert 'Infra validation: FAILED: the model server (python -m serving) did not have the ' \
           'model AVAILABLE within the load timeout' in text
    assert 'Pushed: nothing (infra validation failed: the model server' in text


def test_by_default_the_summary_says_infra_validation_was_skipped(taxi_e2e):
    assert 'Infra validation: skipped: off (validation.infra.enabled: false)' in render(
        taxi_e2e['first'])
