"""The HTML run report, opened in a real headless Chromium (tests/browser.py).

The reports are those the shared runs wrote as they ran: the taxi end-to-end runs
(conftest.taxi_e2e), the regression store (report_testlib) and the validation store's run
stopped by drift (validation_testlib). Every page must draw all its charts with no console
error, no exception and no network request (report_testlib.open_report); a screenshot of
each goes to output/test-artifacts/ (or $TEST_ARTIFACTS).
"""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

import report_testlib
import validation_testlib
from report_testlib import open_report, text, texts
from testlib import REPO

def test_the_e2e_report_opens_offline_with_the_key_numbers(taxi_e2e):
    first = taxi_e2e['first']
    path = first['report']
    assert path and os.path.isfile(path)
    assert os.path.getsize(path) < 3 * 2**20
    with open(path, encoding='utf-8') as f:
        html = f.read()
    # Self-contained: no element of the page loads anything (scripts, styles, images, fonts);
    # the inlined scripts' own text aside.
    markup = re.sub(r'<script[^>]*>.*?</script>', '', html, flags=re.S)
    assert html.count('<script') == markup.count('<script') + 5  # charts' data, 3 libraries, ours
    assert not re.search(r'<(script|link|img|iframe|object|embed)\b[^>]*(src|href|data)=', markup)
    assert not re.search(r'url\(|@import|@font-face', markup)
    values = open_report(path, 'taxi-e2e', values={
        'auc': text('#key-metric'), 'examples': text('#key-examples'),
        'anomalies': text('#key-anomalies'), 'version': text('#key-version'),
        'auc_table': text('#metric-auc'), 'sections': texts('main > section > h2'),
        'toc': texts('nav.toc > ol > li > a'), 'why': text('#why'),
        'features': texts('#feature-stats tbody td:first-child strong'),
        'layers': 'document.querySelectorAll("#layers tbody tr").length',
        'params': text('#param-count'), 'curl': text('#curl-command'),
        'grpc': text('#grpc-snippet'), 'serve': text('#serve-command')})
    metrics = first['evaluation']['metrics']
    assert values['auc'] == values['auc_table'] == f'{metrics["auc"]:.4f}'
    assert values['examples'] == f'{int(metrics["example_count"]):,}'
    assert values['anomalies'] == '0'
    assert values['version'] == first['push']['version']
    assert values['sections'] == ['1. Run', '2. Data', '3. Features', '4. Training',
                                  '5. Evaluation', '6. Push', '7. Lineage']
    assert values['toc'] == ['Run', 'Data', 'Features', 'Training', 'Evaluation', 'Push', 'Lineage']
    assert values['why'].startswith('Blessed: every threshold held (auc')
    assert {'fare', 'payment_type', 'big_tipper', 'tips'} <= set(values['features'])
    assert values['layers'] > 5 and int(values['params'].replace(',', '')) > 1000
    # Every kind of chart the page has for a binary task was drawn.
    assert {'timeline', 'roc', 'pr', 'calibration', 'slices', 'curve-loss',
            'feature-0'} <= set(values['chart_ids'])
    taxi_e2e['report_commands'] = values


def test_the_reports_curl_and_grpc_calls_work_against_the_model_server(taxi_e2e):
    values = taxi_e2e.get('report_commands')
    if values is None:
        pytest.skip('needs test_the_e2e_report_opens_offline_with_the_key_numbers')
    version = taxi_e2e['first']['push']['version']
    serve = shlex.split(values['serve'])
    assert serve[:3] == ['python', 'pipeline_runner.py', 'serve']
    # The environment a user's shell has: no setting of TensorFlow's log level or of warnings.
    env = {k: v for k, v in os.environ.items() if k not in ('TF_CPP_MIN_LOG_LEVEL', 'PYTHONWARNINGS')}
    proc = subprocess.Popen([sys.executable, *serve[1:], '--rest-port', '0', '--grpc-port', '0'],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=dict(env, PYTHONUNBUFFERED='1'))
    try:
        ports, started = {}, []
        deadline = time.time() + 180
        while len(ports) < 2 and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            started.append(line)
            found = re.search(r'(REST|gRPC) listening on (?:http://)?127\.0\.0\.1:(\d+)', line)
            if found:
                ports[found.group(1)] = found.group(2)
        assert len(ports) == 2, 'the server did not start'
        # Its start-up says what it loads and where it listens, without library noise
        # (TensorFlow's C++ log lines, google-api-core's FutureWarning).
        noise = [l for l in started if re.search(r'Warning|cuda|^\d{4}-\d\d-\d\d \S+: [IWE] ', l)]
        assert not noise, ''.join(noise)
        curl = values['curl'].replace('\\\n', ' ').replace(':8501/', f':{ports["REST"]}/')
        deadline = time.time() + 120
        while True:  # the server answers 404 until it has loaded the version
            answer = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=60)
            if '"predictions"' in answer.stdout or time.time() > deadline:
                break
            time.sleep(1)
        assert '"predictions"' in answer.stdout, (curl, answer.stdout, answer.stderr)
        predictions = json.loads(answer.stdout)['predictions']
        assert len(predictions) == 1 and 0.0 <= predictions[0] <= 1.0
        grpc = values['grpc'].replace("'127.0.0.1:8500'", f"'127.0.0.1:{ports['gRPC']}'")
        result = subprocess.run([sys.executable, '-c', grpc], capture_output=True, text=True,
                                timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
        assert result.returncode == 0, result.stderr[-2000:]
        score = float(re.findall(r'\[([0-9.e-]+)\]', result.stdout)[-1])
        # The same row through both APIs gives the same prediction.
        assert score == pytest.approx(predictions[0], abs=1e-5)
        assert version in subprocess.run(
            ['curl', '-s', f'http://127.0.0.1:{ports["REST"]}/v1/models/{serve[-1]}'],
            capture_output=True, text=True).stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_a_cached_rerun_and_a_refused_model_each_say_so(taxi_e2e):
    rerun = open_report(taxi_e2e['rerun']['report'], 'taxi-rerun-cached', values={
        'cached_rows': texts('tr.state-cached td:first-child'),
        'run_rows': 'document.querySelectorAll("#runs-table tbody tr").length'})
    assert {'Transform', 'Trainer', 'Evaluator'} <= set(rerun['cached_rows'])
    assert rerun['run_rows'] == 2  # the cold run and this one
    strict = taxi_e2e['strict']
    auc = strict['evaluation']['metrics']['auc']
    refused = open_report(strict['report'], 'taxi-not-blessed', values={
        'why': text('#why'), 'version': text('#key-version'), 'blessed': text('#key-blessed'),
        'verdicts': texts('#threshold-table tbody td:last-child')})
    assert refused['why'] == f'Not blessed: auc {auc:.4f} fails >= 1.01.'
    assert refused['version'] == 'none' and refused['blessed'] == 'no'
    assert refused['verdicts'] == ['fail', 'not applied (no baseline)']


def test_a_run_stopped_by_drift_writes_a_report_that_lists_it():
    failed = validation_testlib.baseline()['failed']['summary']
    values = open_report(failed['report'], 'drift-stopped', values={
        'error': text('#error'), 'status': text('#status'), 'anomalies': text('#key-anomalies'),
        'drift_count': text('#drift-count'),
        'rows': texts('section#data tr.anomaly'),
        'training': text('section#training')})
    assert values['status'] == 'failed'
    assert values['error'] == failed['error']
    assert 'AnomalyGate failed' in values['error']
    drifted = {(a['feature'], a['kind']) for a in failed['drift']['found']}
    assert ('payment_type', 'COMPARATOR_L_INFTY_HIGH') in drifted
    assert values['anomalies'] == values['drift_count'] == str(len(drifted))
    rows = ' '.join(values['rows'])
    assert 'payment_type' in rows and 'COMPARATOR_L_INFTY_HIGH' in rows and 'fare' in rows
    assert 'validation.drift.per_feature.payment_type' in rows  # what to do about it
    assert 'drift' in values['chart_ids']
    assert 'Not trained' in values['training']


def test_a_regression_run_plots_predicted_against_actual_and_residuals():
    houses = report_testlib.regression_store()
    second = houses['second']['summary']
    values = open_report(second['report'], 'regression', values={
        'points': 'document.querySelectorAll(\'[data-chart="predicted-actual"] g.mark-symbol path\').length',
        'mae': text('#metric-mean_absolute_error'), 'why': text('#why')})
    assert {'predicted-actual', 'residuals', 'slices'} <= set(values['chart_ids'])
    assert not {'roc', 'calibration'} & set(values['chart_ids'])
    assert values['points'] > 20  # one mark per scored eval row
    assert values['mae'] == f'{second["evaluation"]["metrics"]["mean_absolute_error"]:.4f}'
    assert values['why'].startswith('Blessed')


def test_a_run_refused_by_the_gate_lists_the_anomaly_and_what_to_do():
    refused = report_testlib.regression_store()['refused']['summary']
    values = open_report(refused['report'], 'anomaly-stopped', values={
        'count': text('#anomaly-count'), 'rows': texts('#anomaly-table tbody tr'),
        'key': text('#key-anomalies'), 'error': text('#error')})
    assert values['count'] == values['key'] == '1'
    [row] = values['rows']
    assert 'neighbourhood' in row and 'ENUM_TYPE_UNEXPECTED_STRING_VALUES' in row
    assert 'add them to the domain of neighbourhood' in row
    assert values['error'].startswith('AnomalyGate failed: AnomaliesFound')


def test_the_report_command_writes_any_recorded_run_again(tmp_path, capsys):
    import pipeline_runner
    houses = report_testlib.regression_store()
    out = tmp_path / 'again.html'
    code = pipeline_runner.main(['report', 'latest~2', '--config', houses['config'],
                                 '--out', str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f'Report: {out}' in printed
    first = houses['first']['summary']
    values = open_report(str(out), 'report-command', values={
        'title': 'document.title', 'version': text('#key-version')})
    assert first['run_id'] in values['title']
    assert values['version'] == first['push']['version']


def test_statistics_on_a_sample_say_so(tmp_path, capsys):
    # Above 200,000 rows StatisticsGen reads a uniform sample (TFDV's sample_rate): 336k
    # flights showed as "train 145,097 rows", the Evaluator's 65,374 eval rows beside it.
    import shutil

    import tensorflow_data_validation as tfdv
    import yaml
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    import pipeline_runner
    houses = report_testlib.regression_store()
    config = yaml.safe_load(open(houses['config'], encoding='utf-8'))
    metadata = str(tmp_path / 'metadata.sqlite')
    shutil.copy(houses['metadata'], metadata)
    config['paths']['metadata'] = metadata
    config_path = tmp_path / 'houses.yaml'
    config_path.write_text(yaml.safe_dump(config), encoding='utf-8')

    def report(name):
        out = str(tmp_path / f'{name}.html')
        assert pipeline_runner.main(['report', '--config', str(config_path), '--out', out]) == 0
        capsys.readouterr()
        return open_report(out, name, values={'sample': text('#stats-sample')})['sample']

    assert report('all-rows') is None  # every row read: no word of a sample
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata
    store = metadata_store.MetadataStore(connection)
    [stats_type] = [t for t in store.get_execution_types() if 'StatisticsGen' in t.name]
    executions = store.get_executions_by_type(stats_type.name)
    for execution in executions:  # as a run over 800,000 rows records it
        execution.custom_properties['stats_options_json'].string_value = (
            tfdv.StatsOptions(sample_rate=0.25).to_json())
    store.put_executions(executions)
    assert report('sampled').startswith(': a uniform sample of 25.0% of the rows')


def test_the_push_section_shows_the_tflite_model_beside_the_saved_model():
    # The renderer on the summary's TFLite report (components/tflite_export.read_report, as
    # pipeline/report.collect puts it in the summary); no run or browser needed.
    from pipeline.html_report.gather import push_section
    from pipeline.html_report.render import render_page

    summary = {'push': {'pushed': False}, 'tflite_blessed': False, 'tflite': {
        'file': 'assets.extra/model.tflite', 'quantization': 'dynamic_range', 'tolerance': 0.02,
        'examples_checked': 1000, 'max_difference': 0.0061, 'tflite_bytes': 189400,
        'saved_model_bytes': 694098, 'tflite_seconds_per_example': 0.000947,
        'saved_model_seconds_per_example': 0.002468}}
    html = render_page({'push': push_section({}, summary, None, 'binary')})
    table = re.search(r'<table id="tflite">(.*?)</table>', html, re.S)
    assert table, 'no TFLite table in the push section'
    rows = [re.sub(r'<[^>]+>', '|', row).split('|') for row in
            re.findall(r'<tr>(.*?)</tr>', table.group(1), re.S)[1:]]
    cells = [[c for c in row if c.strip()] for row in rows]
    assert cells == [['SavedModel', '677.8 KB', '2.468 ms'], ['TFLite', '185.0 KB', '0.947 ms']]
    assert 'assets.extra/model.tflite' in html and '<code>dynamic_range</code> quantization' in html
    assert '0.0061' in html and 'fails the thresholds' in html
