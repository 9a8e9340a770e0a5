"""Everything the report shows, gathered into one plain dict from ML Metadata, the run's
artifacts and the run's record (``pipeline/run_record``).

``gather(config, store, run, record)`` returns the page's content section by section; the
Data, Training and Evaluation sections come from their own modules. A section that cannot
be read says why in its place (and the error goes to the log): the rest of the report is
still written.
"""
import json
import logging
import os
import shlex
import traceback
from typing import Any, Callable, Dict, List, Optional

import yaml

from pipeline.html_report import data, evaluation, training
from pipeline.metadata import NodeExecution, producer, string_property

# Where the report's serving examples send requests: pipeline_runner.py serve's defaults.
REST_PORT, GRPC_PORT, HOST = 8501, 8500, '127.0.0.1'
EXAMPLE_SCAN = 200  # eval rows searched for one with every serving input present


def _attempt(name: str, fn: Callable[[], Any], errors: Dict[str, str]) -> Any:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - one unreadable section must not lose the report
        logging.getLogger(__name__).warning('report section %s: %s', name, traceback.format_exc())
        errors[name] = f'{type(e).__name__}: {e}'
        return None


# ----------------------------------------------------------------------------------------
# Run


def run_section(run, nodes: Dict[str, NodeExecution], record: Dict[str, Any],
                summary: Dict[str, Any]) -> Dict[str, Any]:
    start = run.create_time_since_epoch
    ordered = sorted(nodes.values(), key=lambda n: (n.started_ms, n.execution.id))
    end = max((n.ended_ms for n in ordered), default=start)
    total = (record.get('total_seconds') or summary.get('total_seconds')
             or round((end - start) / 1000, 1))
    minimum = max(0.05, (end - start) / 1000 * 0.004)  # a cached node still shows as a sliver
    timeline = [{'node': n.node, 'state': n.state, 'start': (n.started_ms - start) / 1000,
                 'end': (n.ended_ms - start) / 1000, 'seconds': (n.ended_ms - n.started_ms) / 1000}
                for n in ordered]
    for row in timeline:
        row['bar_end'] = max(row['end'], row['start'] + minimum)
    return {
        'status': summary.get('status') or ('failed' if any(
            n.state == 'failed' for n in ordered) else 'unknown'),
        'error': summary.get('error'),
        'log': record.get('log') or summary.get('log'),
        'started_ms': start,
        'total_seconds': total,
        'runner': summary.get('runner'),
        'trainer': summary.get('trainer'),
        'timeline': timeline,
        'cached': [n.node for n in ordered if n.state == 'cached'],
        'config_given': (yaml.safe_dump(record['config_given'], sort_keys=False)
                         if record.get('config_given') else None),
        'config': (yaml.safe_dump(record['config'], sort_keys=False)
                   if record.get('config') else None),
        'data_files': record.get('data_files') or [],
        'code': record.get('code'),
        'libraries': record.get('libraries') or {},
        'spans': summary.get('spans') or [],
    }


# ----------------------------------------------------------------------------------------
# Features


def _vocabulary_file(transform_uri: Optional[str], name: str) -> Optional[List[str]]:
    if not transform_uri:
        return None
    path = os.path.join(transform_uri, 'transform_fn', 'assets', name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding='utf-8', errors='replace') as f:
        return [line.rstrip('\n') for line in f]


def _became(f: Dict[str, Any], plan: Dict[str, Any], vocabulary: Optional[List[str]]) -> str:
    kind = f.get('kind')
    oov = plan.get('oov_buckets', 0)
    if kind == 'numeric':
        return 'missing values filled with the mean, then z-scored'
    if kind == 'bucketized':
        return f'{f.get("buckets")} quantile buckets (boundaries computed by Transform)'
    if kind == 'categorical':
        if f.get('vocabulary'):
            return (f'vocabulary of {len(f["vocabulary"])} values (the schema\'s domain) '
                    f'+ {oov} out-of-vocabulary buckets')
        size = f'{len(vocabulary)} values' if vocabulary is not None else 'values'
        return (f'vocabulary of {size} computed from the data, most frequent first '
                f'(at most {plan.get("vocab_size")}) + {oov} out-of-vocabulary buckets')
    return str(kind or '')


_KNOWN = ('name', 'kind', 'dtype', 'buckets', 'vocabulary')


def features_section(nodes: Dict[str, NodeExecution], config) -> Optional[Dict[str, Any]]:
    """The feature plan as Transform (or the Trainer) received it; fields the plan gains later
    show up as they are."""
    source = next((n for n in ('Transform', 'Trainer') if n in nodes
                   and (nodes[n].prop('custom_config') or {}).get('features')), None)
    if source is None:
        return None
    plan = nodes[source].prop('custom_config')['features']
    transform = data.output(nodes, 'Transform', 'transform_graph')
    transform_uri = transform.uri if transform else None
    columns = []
    for f in plan.get('features', []):
        vocabulary = None if f.get('vocabulary') else _vocabulary_file(transform_uri, f['name'])
        values = [v if len(v) <= 28 else v[:27] + '…'
                  for v in map(str, f.get('vocabulary') or vocabulary or [])]
        columns.append({
            'name': f['name'], 'kind': f.get('kind'), 'dtype': f.get('dtype'),
            'transformed': f'{f["name"]}_xf', 'became': _became(f, plan, vocabulary),
            'values': values[:8], 'more_values': max(0, len(values) - 8),
            'other': {k: v for k, v in f.items()
                      if k not in _KNOWN and v not in (None, '', [], {}, False)},
        })
    excluded = [{'name': plan.get('label'), 'why': f'the label ({plan.get("task")} task)'}]
    excluded += [{'name': name, 'why': 'data.exclude in the config: read and validated, '
                                       'never a feature'} for name in plan.get('excluded', [])]
    return {'source': source, 'columns': columns, 'excluded': excluded,
            'settings': {k: v for k, v in plan.items()
                         if k not in ('features', 'excluded') and not isinstance(v, (list, dict))},
            'extra': {k: v for k, v in plan.items()
                      if k not in ('features', 'excluded') and isinstance(v, (list, dict)) and v}}


# ----------------------------------------------------------------------------------------
# Push


def signatures(saved_model_dir: str) -> List[Dict[str, Any]]:
    """Every serving signature of a SavedModel: its inputs and outputs (name, dtype, shape)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    with open(os.path.join(saved_model_dir, 'saved_model.pb'), 'rb') as f:
        saved = saved_model_pb2.SavedModel.FromString(f.read())

    def tensors(infos) -> List[Dict[str, str]]:
        return [{'name': key, 'dtype': tf.dtypes.as_dtype(info.dtype).name,
                 'shape': '[' + ', '.join('None' if d.size < 0 else str(d.size)
                                          for d in info.tensor_shape.dim) + ']'}
                for key, info in sorted(infos.items())]
    found = []
    for name, sig in sorted(saved.meta_graphs[0].signature_def.items()):
        if name.startswith('__'):
            continue
        found.append({'name': name, 'inputs': tensors(sig.inputs), 'outputs': tensors(sig.outputs)})
    return found


def _example_values(examples_uri: str, inputs: List[Dict[str, str]]) -> Dict[str, Any]:
    """One eval row as {serving_json input: value}, for the inputs given: the first row that
    has them all (else the fullest one, gaps filled with "" or 0)."""
    import tensorflow as tf

    from components.features import json_input_name

    best: Dict[str, Any] = {}
    for record in data.eval_records(examples_uri, EXAMPLE_SCAN):
        features = tf.train.Example.FromString(record).features.feature
        features = {json_input_name(name): f for name, f in features.items()}
        row = {}
        for tensor in inputs:
            f = features.get(tensor['name'])
            values = ([v.decode('utf-8', 'replace') for v in f.bytes_list.value]
                      or list(f.float_list.value) or list(f.int64_list.value)) if f else []
            if values:
                row[tensor['name']] = values[0]
        if len(row) > len(best):
            best = row
        if len(row) == len(inputs):
            break
    for tensor in inputs:
        if tensor['name'] not in best:
            best[tensor['name']] = '' if tensor['dtype'] == 'string' else 0
    for tensor in inputs:
        if tensor['dtype'].startswith('float'):
            best[tensor['name']] = float(f'{float(best[tensor["name"]]):.6g}')
        elif tensor['dtype'].startswith('int'):
            best[tensor['name']] = int(best[tensor['name']])
    return {t['name']: best[t['name']] for t in inputs}


def _json_columns(examples_uri: str) -> Dict[str, str]:
    """{serving_json input: column} of the eval examples' features."""
    import tensorflow as tf

    from components.features import json_inputs

    for record in data.eval_records(examples_uri, 1):
        return json_inputs(tf.train.Example.FromString(record).features.feature)
    return {}


def _feature_line(name: str, value: Any) -> str:
    if isinstance(value, str):
        kind, literal = 'bytes_list', f'tf.train.BytesList(value=[{value.encode()!r}])'
    elif isinstance(value, float):
        kind, literal = 'float_list', f'tf.train.FloatList(value=[{value!r}])'
    else:
        kind, literal = 'int64_list', f'tf.train.Int64List(value=[{value!r}])'
    return f'    {name!r}: tf.train.Feature({kind}={literal}),'


def requests(model_name: str, serving_dir: str, sigs: List[Dict[str, Any]],
             example: Dict[str, Any], output_key: str,
             columns: Dict[str, str]) -> Dict[str, str]:
    """Copy-paste calls against ``pipeline_runner.py serve`` on its default ports; ``example``
    is keyed by serving_json input, ``columns`` maps an input to its column (the tf.Example's
    feature name)."""
    from components.signatures import SERVING_DEFAULT, SERVING_JSON

    names = {s['name'] for s in sigs}
    serve = (f'python pipeline_runner.py serve --serving-dir {shlex.quote(serving_dir)} '
             f'--model-name {shlex.quote(model_name)}')
    out = {'serve': serve}
    if SERVING_JSON in names:
        body = json.dumps({'signature_name': SERVING_JSON, 'instances': [example]})
        out['curl'] = (f'curl -s -X POST http://{HOST}:{REST_PORT}/v1/models/{model_name}:predict '
                       f'\\\n  -d {shlex.quote(body)}')
    if SERVING_DEFAULT in names:
        out['grpc'] = '\n'.join([
            'import grpc',
            'import tensorflow as tf',
            'from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc',
            '',
            'example = tf.train.Example(features=tf.train.Features(feature={',
            *[_feature_line(columns.get(k, k), v) for k, v in example.items()],
            '}))',
            'request = predict_pb2.PredictRequest()',
            f'request.model_spec.name = {model_name!r}',
            f'request.model_spec.signature_name = {SERVING_DEFAULT!r}',
            "request.inputs['examples'].CopyFrom(tf.make_tensor_proto([example.SerializeToString()]))",
            f"channel = grpc.insecure_channel('{HOST}:{GRPC_PORT}')",
            'response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)',
            f'print(tf.make_ndarray(response.outputs[{output_key!r}]))',
        ])
    return out


def push_section(nodes: Dict[str, NodeExecution], summary: Dict[str, Any], config,
                 task: str) -> Optional[Dict[str, Any]]:
    from components.features import OUTPUT_KEYS
    from components.signatures import SERVING_JSON

    push = summary.get('push')
    # export.tflite: the TFLite model's size and latency beside the SavedModel's
    # (components/tflite_export's report, as pipeline/report.collect reads it).
    tflite = {'tflite': summary.get('tflite'), 'tflite_blessed': summary.get('tflite_blessed')}
    model = data.output(nodes, 'Trainer', 'model')
    pushed = bool(push and push.get('pushed') and push.get('path')
                  and os.path.isdir(push['path']))
    directory = push['path'] if pushed else (
        os.path.join(model.uri, 'Format-Serving') if model is not None else None)
    if directory is None or not os.path.exists(os.path.join(directory, 'saved_model.pb')):
        return {'push': push, 'signatures': [], 'requests': None, 'directory': None, **tflite}
    sigs = signatures(directory)
    result = {'push': push, 'signatures': sigs, 'directory': directory, 'requests': None,
              'pushed': pushed, **tflite}
    examples = nodes['Evaluator'].inputs.get('examples') if 'Evaluator' in nodes else None
    if pushed and examples:
        json_inputs = next((s['inputs'] for s in sigs if s['name'] == SERVING_JSON), None)
        if json_inputs:
            example = _example_values(examples[0].uri, json_inputs)
            result['example'] = example
            result['requests'] = requests(config.name, config.paths.serving_dir, sigs, example,
                                          OUTPUT_KEYS.get(task, 'probability'),
                                          _json_columns(examples[0].uri))
    return result


# ----------------------------------------------------------------------------------------
# Lineage


LINEAGE = (('examples', 'Trainer', 'inputs', 'examples'),
           ('statistics', 'StatisticsGen', 'outputs', 'statistics'),
           ('schema', 'Trainer', 'inputs', 'schema'),
           ('transform graph', 'Trainer', 'inputs', 'transform_graph'),
           ('warm start from', 'Trainer', 'inputs', 'base_model'),
           ('model', 'Trainer', 'outputs', 'model'),
           ('baseline', 'Evaluator', 'inputs', 'baseline_model'),
           ('evaluation', 'Evaluator', 'outputs', 'evaluation'),
           ('blessing', 'Evaluator', 'outputs', 'blessing'),
           ('pushed model', 'Pusher', 'outputs', 'pushed_model'))


def lineage_section(store, run, nodes: Dict[str, NodeExecution]) -> List[Dict[str, Any]]:
    rows = []
    for role, node, side, key in LINEAGE:
        found = nodes.get(node)
        for artifact in (getattr(found, side).get(key, []) if found else []):
            made = producer(store, artifact) or {}
            rows.append({'role': role, 'type': artifact.type, 'id': artifact.id, 'uri': artifact.uri,
                         'made_by': made.get('node', ''), 'run': made.get('run', ''),
                         'this_run': made.get('run') == run.name,
                         'span': string_property(artifact, 'span')})
    return rows


# ----------------------------------------------------------------------------------------


def key_numbers(page: Dict[str, Any], summary: Dict[str, Any], metric: str) -> Dict[str, Any]:
    ev = summary.get('evaluation') or {}
    metrics = ev.get('metrics') or {}
    anomalies = (summary.get('anomalies') or {}).get('found')
    drift = (summary.get('drift') or {}).get('found')
    push = summary.get('push') or {}
    return {
        'metric': metric, 'metric_value': metrics.get(metric),
        'baseline_value': (ev.get('baseline_metrics') or {}).get(metric),
        'eval_examples': metrics.get('example_count'),
        'examples': (page.get('data') or {}).get('examples') or {},
        'anomalies': None if anomalies is None and drift is None
        else len(anomalies or []) + len(drift or []),
        'blessed': summary.get('blessed'),
        'version': push.get('version') if push.get('pushed') else None,
    }


def _runs_until(rows: List[Dict[str, Any]], run_id: str, keep: int = 20) -> List[Dict[str, Any]]:
    """The ``keep`` runs up to and including ``run_id`` (rows are oldest first)."""
    end = next((i for i, r in enumerate(rows) if r['run_id'] == run_id), len(rows) - 1)
    return rows[max(0, end + 1 - keep):end + 1]


def gather(config, store, run, record: Dict[str, Any], summary: Dict[str, Any]) -> Dict[str, Any]:
    """The report's content (see the module docstring)."""
    from pipeline import runs as run_browser
    from pipeline.metadata import read_runs

    nodes = read_runs(store, [run])[run.id]
    errors: Dict[str, str] = {}
    plan_task = config.data.task
    page: Dict[str, Any] = {'pipeline': config.name, 'run_id': run.name, 'errors': errors}
    page['run'] = _attempt('run', lambda: run_section(run, nodes, record, summary), errors)
    page['data'] = _attempt('data', lambda: data.gather_data(nodes, summary, config), errors)
    page['features'] = _attempt('features', lambda: features_section(nodes, config), errors)
    page['training'] = _attempt('training', lambda: training.gather_training(nodes, summary), errors)
    page['evaluation'] = _attempt(
        'evaluation', lambda: evaluation.gather_evaluation(nodes, summary, plan_task), errors)
    page['push'] = _attempt('push', lambda: push_section(nodes, summary, config, plan_task), errors)
    page['lineage'] = _attempt('lineage', lambda: lineage_section(store, run, nodes), errors)
    metric = run_browser.key_metric(config)
    page['previous_runs'] = _attempt(
        'previous runs', lambda: _runs_until(run_browser.run_rows(config, store), run.name), errors)
    page['key'] = key_numbers(page, summary, metric)
    page['nodes_run'] = sorted(nodes)
    return page
