"""Shared fixtures: small data, and the shared pipeline runs.

The end-to-end runs are session fixtures so that many tests assert on one run: a full run
on a few hundred rows takes about two minutes on two cores.
"""
import dataclasses
import io
import logging
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # testlib, whatever the import mode
from testlib import FAST_TRAINING, taxi_rows, write_config, write_csv  # noqa: E402

@pytest.fixture(scope='session')
def taxi_sample(tmp_path_factory):
    """A data root holding 500 rows of the bundled taxi data."""
    root = tmp_path_factory.mktemp('taxi_data')
    header, rows = taxi_rows(500)
    write_csv(str(root / 'data.csv'), header, rows)
    return str(root)


@pytest.fixture(scope='session')
def taxi_e2e(tmp_path_factory, taxi_sample):
    """Three runs of the taxi pipeline on one pipeline root and metadata store:

    first   a cold run (blessed, pushed); ``first_output`` is what it printed;
    rerun   the same run again through TFX (served from TFX's cache), with every log record
            dropped (``logging.disable``), as a TFX whose log text changed would leave the
            run; ``rerun_output`` is what it printed;
    fast_rerun  the same again, answered without starting TFX (pipeline/fast_rerun.py);
    strict  the same data with an unreachable AUC bound (not blessed, nothing pushed),
            through the command line, with --summary-json.
    """
    from pipeline.config import load_config
    from pipeline.run import run_pipeline
    import pipeline_runner

    directory = str(tmp_path_factory.mktemp('taxi_e2e'))
    path = write_config(directory, data={'root': taxi_sample}, training=FAST_TRAINING)
    config = load_config(path)
    first_output = io.StringIO()
    first = run_pipeline(config, out=first_output)
    versions_after_first = sorted(os.listdir(config.paths.serving_dir))
    # Through TFX's own cache (the fast path off), then the default fast path.
    rerun_output = io.StringIO()
    logging.disable(logging.CRITICAL)
    try:
        rerun = run_pipeline(config.replace(run=dataclasses.replace(config.run, fast_rerun=False)),
                             out=rerun_output)
    finally:
        logging.disable(logging.NOTSET)
    from pipeline.report import latest_run, open_store, run_outputs
    store = open_store(config.paths.metadata)
    rerun_in_metadata = {n: v['state'] for n, v in
                         run_outputs(store, latest_run(store, config.name)).items()}
    fast_rerun = run_pipeline(config)
    versions_after_rerun = sorted(os.listdir(config.paths.serving_dir))
    summary_json = os.path.join(directory, 'strict-summary.json')
    strict_exit = pipeline_runner.main([
        '--config', path, '--set', 'evaluation.thresholds=[{metric: auc, lower: 1.01}]',
        '--summary-json', summary_json])
    with open(summary_json, encoding='utf-8') as f:
        import json
        strict = json.load(f)
    return {'config': config, 'config_path': path, 'first': first, 'rerun': rerun,
            'first_output': first_output.getvalue(), 'rerun_output': rerun_output.getvalue(),
            'fast_rerun': fast_rerun, 'rerun_in_metadata': rerun_in_metadata,
            'strict': strict, 'strict_exit': strict_exit,
            'versions_after_first': versions_after_first,
            'versions_after_rerun': versions_after_rerun,
            'versions_after_strict': sorted(os.listdir(config.paths.serving_dir))}
