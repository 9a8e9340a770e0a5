"""The run summary: read back from ML Metadata and the artifacts a run recorded.

``collect(config, since)`` returns a plain dict (it is also what ``--summary-json`` writes);
``render(summary)`` turns it into the lines printed at the end of a run.
"""
import json
import os
from typing import Any, Dict, List, Optional

from components.features import (GAIN_OVER_TRIVIAL, KEY_METRICS, TRIVIAL_BASELINE,
                                  TRIVIAL_MODELS, lower_is_better)
from pipeline import spans
# The ML Metadata readers live in pipeline/metadata.py (shared with the HTML report and the
# run browser); these names stay importable from here.
from pipeline.metadata import STATES, latest_run, open_store, read_runs, tfx_artifact  # noqa: F401


def run_outputs(store, run_context) -> Dict[str, Dict[str, Any]]:
    """{node id: {'state': ..., 'inputs': {key: [artifacts]}, 'outputs': {key: [artifacts]}}}
    for one pipeline run (TFX artifact objects)."""
    return {node: {'state': n.state,
                   'inputs': {k: [tfx_artifact(a, store) for a in v] for k, v in n.inputs.items()},
                   'outputs': {k: [tfx_artifact(a, store) for a in v] for k, v in n.outputs.items()}}
            for node, n in read_runs(store, [run_context])[run_context.id].items()}


def evaluation_summary(evaluation_uri: str) -> Dict[str, Any]:
    """Overall metrics of the candidate (and baseline), and the threshold checks."""
    import tensorflow_model_analysis as tfma

    overall: Dict[str, float] = {}
    baseline: Dict[str, float] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:
            continue
        for kv in metrics.metric_keys_and_values:
            if kv.key.is_diff or not kv.value.HasField('double_value'):
                continue
            target = baseline if kv.key.model_name == 'baseline' else overall
            target[kv.key.name] = kv.value.double_value.value
    validation = tfma.load_validation_result(evaluation_uri)
    failures = []
    for per_slice in validation.metric_validations_per_slice:
        for f in per_slice.failures:
            t = f.metric_threshold
            if t.HasField('value_threshold'):
                vt = t.value_threshold
                bound = ' and '.join(
                    ([f'>= {vt.lower_bound.value:g}'] if vt.HasField('lower_bound') else []) +
                    ([f'<= {vt.upper_bound.value:g}'] if vt.HasField('upper_bound') else []))
            else:
                ct = t.change_threshold
                bound = (f'change vs baseline '
                         f'{"> " if ct.direction == 2 else "< "}{ct.absolute.value:g}')
            value = (f.metric_value.double_value.value
                     if f.metric_value.HasField('double_value') else None)
            slice_name = ', '.join(f'{k.column}={k.bytes_value.decode() or k.int64_value or k.float_value}'
                                   for k in per_slice.slice_key.single_slice_keys) or 'overall'
            failures.append({'metric': f.metric_key.name, 'slice': slice_name,
                             'diff_vs_baseline': f.metric_key.is_diff, 'value': value,
                             'bound': bound, 'message': f.message})
    return {'artifact': evaluation_uri, 'metrics': overall, 'baseline_metrics': baseline,
            'validation_ok': validation.validation_ok,
            'missing_thresholds': validation.missing_thresholds, 'failures': failures}


def recorded_plan(store, run_context) -> Optional[Dict[str, Any]]:
    """The feature plan the run's Transform was given (its ``custom_config``), as a dict."""
    for execution in store.get_executions_by_context(run_context.id):
        if execution.type.endswith('.Transform') and 'custom_config' in execution.custom_properties:
            config = json.loads(execution.custom_properties['custom_config'].string_value)
            return config.get('features')
    return None


def trivial_comparison(task: str, metrics: Dict[str, float]) -> Optional[Dict[str, Any]]:
    """The candidate's key metric beside a trivial model's (``components.metrics.
    GainOverTrivial``); ``weak`` when it is no better."""
    if GAIN_OVER_TRIVIAL not in metrics or TRIVIAL_BASELINE not in metrics:
        return None
    gain, trivial, metric = metrics[GAIN_OVER_TRIVIAL], metrics[TRIVIAL_BASELINE], KEY_METRICS[task]
    value = trivial - gain if lower_is_better(metric) else trivial + gain
    return {'metric': metric, 'value': value, 'trivial': trivial, 'gain': gain,
            'trivial_model': TRIVIAL_MODELS[task], 'weak': not gain > 0}


def collect(config, since_ms: int = 0, components: Optional[List[Dict[str, Any]]] = None,
            error: Optional[str] = None, total_seconds: float = 0.0,
            run=None) -> Dict[str, Any]:
    """The summary of the newest run since ``since_ms``, or of ``run`` (a pipeline_run
    context, for reading back any recorded run)."""
    summary: Dict[str, Any] = {
        'pipeline': config.name, 'runner': config.run.runner, 'trainer': config.training.trainer,
        'label': config.data.label,
        'status': 'failed' if error else 'succeeded', 'error': error,
        'components': components or [], 'total_seconds': round(total_seconds, 1),
        'pipeline_root': config.paths.pipeline_root, 'metadata': config.paths.metadata,
        'spans': spans.window(config.data.root, config.data.spans),  # [] for a flat root
        'anomalies': None, 'drift': None, 'evaluation': None, 'blessed': None, 'push': None,
        # The InfraValidator's verdict (components/infra_validator), or why it did not run.
        'infra_validation': (None if config.validation.infra.enabled
                             else {'skipped': 'off (validation.infra.enabled: false)'}),
        'thresholds': [dataclass_dict(t) for t in config.evaluation.thresholds],
        'change_thresholds': [dataclass_dict(t) for t in config.evaluation.change_thresholds],
        # whether the gate requires beating a trivial model (evaluation.beat_trivial)
        'beat_trivial': config.evaluation.gates_on_trivial,
    }
    if not os.path.exists(config.paths.metadata):
        return summary
    store = open_store(config.paths.metadata)
    run = run or latest_run(store, config.name, since_ms)
    if run is None:
        return summary
    nodes = run_outputs(store, run)
    summary['run_id'] = run.name
    summary['features'] = recorded_plan(store, run)
    states = {n: v['state'] for n, v in nodes.items()}
    for c in summary['components']:
        c.setdefault('state', states.get(c['id'], 'not run'))
    if not summary['components']:
        summary['components'] = [{'id': n, 'state': s} for n, s in states.items()]

    # Rows ExampleGen left out for want of a label, over every span read.
    summary['rows_without_label'] = sum(
        a.get_int_custom_property('rows_without_label')
        for n, v in nodes.items() if 'ExampleGen' in n for a in v.get('outputs', {}).get('examples', []))
    # Schema anomalies: ExampleValidator (newest span), then ExampleValidator_span<N> for the
    # older spans trained on; each anomaly names the node that found it. Drift apart.
    validators = sorted((n for n in nodes if n.startswith('ExampleValidator')),
                        key=lambda n: (n != 'ExampleValidator', n))
    for node, key in [(n, 'anomalies') for n in validators] + [('DriftCheck', 'drift')]:
        artifact = nodes.get(node, {}).get('outputs', {}).get('anomalies')
        if not artifact:
            continue
        from components.anomaly_gate.executor import read_anomalies  # imports TFX: only here
        entry = summary.get(key) or {'artifact': artifact[0].uri, 'artifacts': {}, 'found': []}
        entry['artifacts'][node] = artifact[0].uri
        entry['found'] += [dict(a._asdict(), source=node) for a in read_anomalies(artifact[0])]
        summary[key] = entry
    evaluation = nodes.get('Evaluator', {}).get('outputs', {})
    if evaluation.get('evaluation'):
        summary['evaluation'] = evaluation_summary(evaluation['evaluation'][0].uri)
        # Resolvers record no outputs; the Evaluator records the baseline it was given.
        baseline = nodes.get('Evaluator', {}).get('inputs', {}).get('baseline_model')
        summary['evaluation']['baseline_model'] = baseline[0].uri if baseline else None
        summary['evaluation']['trivial'] = trivial_comparison(
            config.data.task, summary['evaluation']['metrics'])
    if evaluation.get('blessing'):
        summary['blessed'] = bool(evaluation['blessing'][0].get_int_custom_property('blessed'))
        if evaluation['blessing'][0].has_custom_property('tflite_blessed'):  # export.tflite_gate
            summary['tflite_blessed'] = bool(
                evaluation['blessing'][0].get_int_custom_property('tflite_blessed'))
    exported = nodes.get('TFLiteExport', {}).get('outputs', {}).get('exported_model')
    if exported:
        from components.tflite_export.executor import read_report  # imports TF: only here
        summary['tflite'] = read_report(exported[0])
    infra = nodes.get('InfraValidator', {}).get('outputs', {}).get('blessing')
    if infra:
        from components.infra_validator.executor import read_blessing  # imports TF: only here
        summary['infra_validation'] = read_blessing(infra[0])
    pushed = nodes.get('Pusher', {}).get('outputs', {}).get('pushed_model')
    if pushed:
        p = pushed[0]
        summary['push'] = {'pushed': bool(p.get_int_custom_property('pushed')),
                           'path': p.get_string_custom_property('pushed_destination') or None,
                           'version': p.get_string_custom_property('pushed_version') or None,
                           'from_cache': states.get('Pusher') == 'cached'}
    inferred = nodes.get('BulkInferrer', {}).get('outputs', {}).get('inference_result')
    if inferred:
        from components.bulk_inferrer.executor import read_summary
        summary['inference'] = dict(read_summary(inferred[0]), artifact=inferred[0].uri)
    trainer = nodes.get('Trainer', {}).get('outputs', {})
    if trainer.get('model'):
        # The trainer the model records (assets/trainer.txt), which wins over the config's
        # name when a custom trainer module (modules.trainer) made it.
        from components.signatures import read_trainer
        summary['trainer'] = read_trainer(os.path.join(
            trainer['model'][0].uri, 'Format-Serving')) or summary['trainer']
    if trainer.get('model_run'):
        summary['tensorboard_logdir'] = trainer['model_run'][0].uri
    summary['tuning'] = tuning_summary(nodes, states)
    summary['training_record'] = training_of(nodes) or None
    return summary


def tuning_summary(nodes, states) -> Optional[Dict[str, Any]]:
    """The Tuner's trials and winner (``components/tuner/executor.py``'s ``trials.json``),
    or the results tuning.reuse imported; and what the Trainer trained with (the training
    record in its model). None when the run did not tune."""
    import json
    tuner = nodes.get('Tuner', {}).get('outputs', {}).get('tuner_results')
    imported = nodes.get('TuningResultsImporter', {}).get('outputs', {}).get('result')
    if not tuner and not imported:
        return None
    entry: Dict[str, Any] = {}
    if tuner:
        from components.tuner.executor import read_trials
        entry = dict(read_trials(tuner[0].uri), from_cache=states.get('Tuner') == 'cached')
    else:
        entry['reused'] = imported[0].uri
    record = training_of(nodes)
    if record:
        entry['trained_with'] = record.get('hyperparameters')
    return entry


def training_of(nodes) -> Dict[str, Any]:
    """The training record the Trainer's model holds (components/training_record.py)."""
    model = nodes.get('Trainer', {}).get('outputs', {}).get('model')
    if not model:
        return {}
    from components import training_record
    return training_record.read(os.path.join(model[0].uri, 'Format-Serving'))


def distribution_line(record: Optional[Dict[str, Any]]) -> List[str]:
    """How the model was trained, when it was distributed."""
    if not record or record.get('distribute', 'none') == 'none':
        return []
    return [f'Training: {record["distribute"]} on {record["workers"]} worker(s), '
            f'{record["replicas_in_sync"]} replica(s) in sync, global batch '
            f'{record["global_batch_size"]}'
            + (', learning rate scaled by the replicas' if record.get('scale_lr') else '')]


def _values(values: Dict[str, Any]) -> str:
    return ' '.join(f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}'
                    for k, v in values.items() if not k.startswith('tuner/'))


def tuning_lines(tuning: Optional[Dict[str, Any]]) -> List[str]:
    """The search (each trial: hyperparameters, objective, time) and its winner."""
    if not tuning:
        return []
    trained = tuning.get('trained_with')
    if tuning.get('reused'):
        return [f'Tuning: reused {tuning["reused"]} (tuning.reuse)'
                + (f'; trained with {_values(trained)}' if trained else '')]
    lines = [f'Tuning: {tuning["algorithm"]} search, {len(tuning["trials"])} trial(s) in '
             f'{tuning["seconds"]:.1f}s, objective {tuning["objective"]} ({tuning["direction"]}); '
             f'stopped by {tuning["stopped_by"]}'
             + (' [from an earlier run; nothing changed]' if tuning.get('from_cache') else '')]
    for t in tuning['trials']:
        mark = '*' if t['trial_id'] == tuning['best_trial'] else ' '
        score = 'n/a' if t['score'] is None else f'{t["score"]:.4f}'
        lines.append(f' {mark}trial {t["trial_id"]}  {tuning["objective"]} {score}  '
                     f'{t["seconds"] or 0:.1f}s  {t["status"].lower()}'
                     + (' (cut by the time cap)' if t['cut_by_time_cap'] else '')
                     + f'  {_values(t["values"])}')
    lines.append(f'  winner: trial {tuning["best_trial"]}, {tuning["objective"]} '
                 f'{tuning["best_score"]:.4f}'
                 + (f'; the Trainer trained with {_values(trained)}' if trained else ''))
    return lines


def dataclass_dict(obj) -> Dict[str, Any]:
    import dataclasses
    return {k: v for k, v in dataclasses.asdict(obj).items() if v is not None}


def _fmt(value) -> str:
    return 'n/a' if value is None else f'{value:.4f}'


def plan_lines(plan: Optional[Dict[str, Any]]) -> List[str]:
    """One line per column of the recorded feature plan: what it became, and why."""
    if not plan:
        return []
    from components.features import describe
    rows = describe(plan)
    width = min(28, max(len(name) for name, _ in rows))
    return ['Features (what each column became, and why):'] + [
        f'  {name:{width}s} {what}' for name, what in rows]


def trivial_line(trivial: Optional[Dict[str, Any]], gating: bool = False) -> List[str]:
    """The warning when the model does not beat a trivial one (empty when it does);
    ``gating``: evaluation.beat_trivial gates on it."""
    if not trivial or not trivial['weak']:
        return []
    better = 'lower' if lower_is_better(trivial['metric']) else 'higher'
    gate = ('evaluation.beat_trivial refuses to bless it' if gating else
            'evaluation.beat_trivial: true refuses to bless such a model')
    return [f'Weak model: its {trivial["metric"]} on the eval split, {_fmt(trivial["value"])}, is '
            f'no better than a trivial model\'s, {_fmt(trivial["trivial"])} '
            f'({trivial["trivial_model"]}; {better} is better). Check the label, the features '
            f'the plan kept and the training settings; {gate}.']


def baseline_line(ev: Dict[str, Any], change_thresholds: List[Dict[str, Any]]) -> List[str]:
    """A note when the candidate's key metric is worse than the baseline's and no
    ``evaluation.change_thresholds`` entry gates on it (empty otherwise): the gate then
    blesses a model worse than the one in production."""
    trivial = ev.get('trivial') or {}
    metric = trivial.get('metric')
    if metric not in ev['metrics'] or metric not in ev.get('baseline_metrics', {}) or \
            any(t['metric'] == metric for t in change_thresholds):
        return []
    value, baseline = ev['metrics'][metric], ev['baseline_metrics'][metric]
    lower = lower_is_better(metric)
    if not (value > baseline if lower else value < baseline):
        return []
    return [f'Worse than the baseline: {metric} {_fmt(value)} against {_fmt(baseline)} '
            f'({"lower" if lower else "higher"} is better), and no evaluation.change_thresholds '
            f'entry gates on it: {{metric: {metric}, max_decrease: <how much worse it may be>'
            f'{", higher_is_better: false" if lower else ""}}} would.']


SMALL_EVAL = 100  # eval examples under which the summary says the metrics are noise


def small_eval_line(ev: Dict[str, Any]) -> List[str]:
    """A note when the eval split is too small for its metrics to mean much (empty
    otherwise)."""
    n = ev['metrics'].get('example_count')
    if not n or n >= SMALL_EVAL:
        return []
    return [f'Few eval rows: the metrics above come from {n:.0f} examples, where one example '
            f'moves an accuracy by {1 / n:.1%}: at this size the gate decides on noise. More '
            'rows, or a larger eval share (data.split), make it mean more.']


# A binary model's calibration (mean prediction / mean label) further than this factor from
# 1 is worth a word when class weights explain it.
CALIBRATION_FACTOR = 1.2


def weighted_line(summary: Dict[str, Any]) -> List[str]:
    """A note when class weights (the Keras trainer's) left a binary model's probabilities
    far from the rates they stand for (empty otherwise): the weights shift every probability
    towards the rare class; the ranking, and so AUC, is what they are for."""
    weights = (summary.get('features') or {}).get('class_weights') or {}
    calibration = summary['evaluation']['metrics'].get('calibration')
    if (not weights or summary.get('trainer') != 'keras' or calibration is None
            or 1 / CALIBRATION_FACTOR <= calibration <= CALIBRATION_FACTOR):
        return []
    shown = ', '.join(f'{k!r}: {v:.3g}' for k, v in sorted(weights.items()))
    return [f'Weighted probabilities: training weighted the classes ({shown}), so the '
            f'predicted probabilities are not the classes\' rates: calibration {calibration:.2f} '
            '(mean prediction over mean label; 1 is calibrated). The ranking (AUC) is what the '
            'weights serve; for probabilities to act on as they are, set '
            'features.roles.class_weights: false.']


def evaluation_notes(summary: Dict[str, Any]) -> List[str]:
    """What the summary and the report say in words about the evaluation: a weak model, a
    model worse than the baseline that no threshold gates, an eval split too small, weighted
    probabilities."""
    ev = summary.get('evaluation')
    if not ev:
        return []
    return (trivial_line(ev.get('trivial'), bool(summary.get('beat_trivial')))
            + baseline_line(ev, summary['change_thresholds'])
            + small_eval_line(ev) + weighted_line(summary))


def infra_line(infra: Dict[str, Any]) -> str:
    if infra.get('skipped'):
        return f'skipped: {infra["skipped"]}'
    if infra['blessed']:
        servers = ' and '.join(infra['servers'])
        return (f'passed ({servers}: {len(infra["signatures"])} signatures over REST and gRPC, '
                f'{infra["examples"]} examples, {infra["seconds"]:.1f}s)'
                + ('' if infra.get('tf_serving', '').startswith('/') else
                   f'; {infra.get("tf_serving")}'))
    return f'FAILED: {infra["reason"]}'


def render(summary: Dict[str, Any]) -> str:
    lines = ['', f'== {summary["pipeline"]}: run {summary["status"]} in '
                 f'{summary["total_seconds"]:.1f}s ({summary["runner"]} runner, '
                 f'{summary["trainer"]} trainer)']
    if summary.get('error'):
        lines.append(f'Error: {summary["error"]}')
    if summary.get('spans'):
        lines.append('Data: span' + ('s ' if len(summary['spans']) > 1 else ' ')
                     + ', '.join(map(str, summary['spans'])))
    lines += plan_lines(summary.get('features'))
    if summary.get('rows_without_label'):
        lines.append(f'Rows without a label: {summary["rows_without_label"]:,}, left out of '
                     f'training and evaluation (an empty cell or a data.na_values token in '
                     f'column {summary.get("label", "")!r})')
    for key, title in (('anomalies', 'Data validation'), ('drift', 'Drift against the previous span')):
        anomalies = summary.get(key)
        if anomalies is None:
            continue
        found = anomalies['found']
        where = [uri for node, uri in anomalies['artifacts'].items()
                 if any(a['source'] == node for a in found)]
        lines.append(f'{title}: {len(found) or "no"} anomal{"y" if len(found) == 1 else "ies"}'
                     + (f' (see {", ".join(where)})' if where else ''))
        # When the gate stopped the run, its error above already lists them.
        if 'AnomaliesFound' not in (summary.get('error') or ''):
            lines += [f'  [{a["split"]}] {a["feature"]}: {a["kind"]}: {a["description"]}'
                      + ('' if a['source'] in ('ExampleValidator', 'DriftCheck') else f' ({a["source"]})')
                      for a in found]
    lines += tuning_lines(summary.get('tuning'))
    lines += distribution_line(summary.get('training_record'))
    ev = summary.get('evaluation')
    if ev:
        lines.append('Evaluation (eval split, overall):')
        bounds = {t['metric']: t for t in summary['thresholds']}
        changes = {t['metric']: t for t in summary['change_thresholds']}
        for name, value in sorted(ev['metrics'].items()):
            note = ''
            if name in bounds:
                t = bounds[name]
                note += ''.join([f'  >= {t["lower"]:g}' if t.get('lower') is not None else '',
                                 f'  <= {t["upper"]:g}' if t.get('upper') is not None else ''])
            if name in ev['baseline_metrics']:
                note += f'  (baseline {_fmt(ev["baseline_metrics"][name])}'
                if name in changes:
                    note += f', may drop at most {changes[name]["max_decrease"]:g}'
                note += ')'
            lines.append(f'  {name:28s} {_fmt(value)}{note}')
        if ev.get('baseline_model'):
            lines.append(f'  baseline: {ev["baseline_model"]}')
        elif not ev['baseline_metrics']:
            lines.append('  no baseline: no model was blessed before this one')
        lines += evaluation_notes(summary)
    if summary.get('blessed') is not None:
        if summary['blessed']:
            lines.append('Blessed: yes')
        else:
            lines.append('Blessed: NO')
            if summary.get('tflite_blessed') is False:
                lines.append('  the TFLite model fails the thresholds (export.tflite_gate; its '
                             'evaluation: <evaluation>/tflite)')
            for f in (ev or {}).get('failures', []):
                what = 'change vs baseline' if f['diff_vs_baseline'] else 'value'
                trivial = (ev or {}).get('trivial')
                if f['metric'] == 'gain_over_trivial' and not f['diff_vs_baseline'] and trivial:
                    lines.append(f'  no better than a trivial model (evaluation.beat_trivial): '
                                 f'{trivial["metric"]} {_fmt(trivial["value"])} against '
                                 f'{_fmt(trivial["trivial"])} ({trivial["trivial_model"]})')
                    continue
                lines.append(f'  {f["metric"]} [{f["slice"]}] {what} {_fmt(f["value"])} '
                             f'fails {f["bound"]}' + (f' ({f["message"].strip()})' if f['message'] else ''))
            if ev and ev.get('missing_thresholds'):
                lines.append('  no thresholds are configured: TFMA blesses nothing without one')
    tflite = summary.get('tflite')
    if tflite:
        lines.append(
            f'TFLite: {tflite["file"]} {tflite["tflite_bytes"] / 1024:,.0f} KiB, '
            f'{tflite["tflite_seconds_per_example"] * 1e3:.2f} ms/example (SavedModel '
            f'{tflite["saved_model_bytes"] / 1024:,.0f} KiB, '
            f'{tflite["saved_model_seconds_per_example"] * 1e3:.2f} ms); '
            f'{tflite["quantization"]} quantization, largest difference '
            f'{tflite["max_difference"]:.2g} on {tflite["examples_checked"]} eval examples '
            f'(<= {tflite["tolerance"]:g})'
            + ({True: '; meets the thresholds (export.tflite_gate)',
                False: '; FAILS the thresholds (export.tflite_gate)'}.get(
                    summary.get('tflite_blessed'), '')))
    infra = summary.get('infra_validation')
    if infra:
        lines.append(f'Infra validation: {infra_line(infra)}')
    push = summary.get('push')
    if push:
        if push['pushed']:
            lines.append(f'Pushed: {push["path"]} (version {push["version"]})'
                         + (' [from an earlier run; nothing changed]' if push['from_cache'] else ''))
        else:
            why = ('infra validation failed: ' + infra['reason']
                   if summary.get('blessed') and infra and infra.get('blessed') is False
                   else 'the model was not blessed')
            lines.append(f'Pushed: nothing ({why}); serving is unchanged')
    inference = summary.get('inference')
    if inference:
        if inference.get('skipped'):
            lines.append(f'Batch predictions: skipped ({inference["skipped"]})')
        else:
            lines.append(f'Batch predictions: {inference["rows"]:,} rows of {inference["files"]} '
                         f'file(s) -> {inference["output"]}; {inference["rejected"]:,} rejected'
                         + (f' ({inference["rejects"]})' if inference['rejected'] else ''))
    if summary.get('tensorboard_logdir'):
        lines.append(f'TensorBoard: tensorboard --logdir {summary["tensorboard_logdir"]}')
    if summary.get('report'):
        lines.append(f'Report: {summary["report"]}')
    elif summary.get('report_error'):
        lines.append(f'Report: not written ({summary["report_error"]})')
    lines.append(f'Artifacts: {summary["pipeline_root"]}   Metadata: {summary["metadata"]}')
    return '\n'.join(lines)
