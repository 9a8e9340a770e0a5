"""The report's Evaluation section: TFMA's metrics for every slice, candidate beside
baseline, each threshold with its verdict, and the plots of the task.

Metrics and plots are TFMA's own output (``tfma.load_metrics`` / ``tfma.load_plots`` on the
Evaluator's artifact). The binary plots come from the two plots the Evaluator computes
(``ConfusionMatrixPlot``: ROC and precision-recall; ``CalibrationPlot``: calibration,
rebinned from 1,000 buckets to 20), the multi-class confusion matrix from
``MultiClassConfusionMatrixPlot``. TFMA has no per-example plot for regression, so the
regression plots score the first ``REGRESSION_SAMPLE`` rows of the eval split with the
trained model's ``serving_default`` signature, as a client would.
"""
import math
import os
from typing import Any, Dict, List, Optional

from components.features import GAIN_OVER_TRIVIAL, LABEL_VOCAB, OUTPUT_KEYS, lower_is_better
from components.signatures import SERVING_DEFAULT, load_saved_model
from pipeline.report import evaluation_notes

CURVE_POINTS = 100
CALIBRATION_BUCKETS = 20
REGRESSION_SAMPLE = 1000
CANDIDATE, BASELINE = 'candidate', 'baseline'


def slice_name(slice_key) -> str:
    parts = []
    for k in slice_key.single_slice_keys:
        kind = k.WhichOneof('kind')
        value = getattr(k, kind) if kind else ''
        parts.append(f'{k.column}={value.decode("utf-8", "replace") if isinstance(value, bytes) else value}')
    return ', '.join(parts) or 'overall'


def _sort_key(name: str):
    """Overall first, then slices by column and by value, numbers in numeric order."""
    if name == 'overall':
        return (0, '', 0.0, '')
    column, _, value = name.partition('=')
    try:
        return (1, column, float(value), '')
    except ValueError:
        return (1, column, math.inf, value)


def _finite(value: Optional[float]) -> Optional[float]:
    return value if value is not None and math.isfinite(value) else None


def metrics_by_slice(uri: str) -> List[Dict[str, Any]]:
    """[{slice, candidate: {metric: value}, baseline: {...}}], overall first."""
    import tensorflow_model_analysis as tfma

    rows: Dict[str, Dict[str, Any]] = {}
    for metrics in tfma.load_metrics(uri):
        name = slice_name(metrics.slice_key)
        row = rows.setdefault(name, {'slice': name, CANDIDATE: {}, BASELINE: {}})
        for kv in metrics.metric_keys_and_values:
            if kv.key.is_diff or kv.key.HasField('sub_key') or not kv.value.HasField('double_value'):
                continue
            side = BASELINE if kv.key.model_name == BASELINE else CANDIDATE
            row[side][kv.key.name] = _finite(kv.value.double_value.value)
    return [rows[k] for k in sorted(rows, key=_sort_key)]


def _every(items: List[Any], n: int) -> List[Any]:
    if len(items) <= n:
        return items
    step = (len(items) - 1) / (n - 1)
    return [items[round(i * step)] for i in range(n)]


def binary_curves(plot) -> Dict[str, List[Dict[str, float]]]:
    matrices = list(plot.confusion_matrix_at_thresholds.matrices)
    roc, pr = [], []
    for m in _every(matrices, CURVE_POINTS):
        positives = m.true_positives + m.false_negatives
        negatives = m.false_positives + m.true_negatives
        if positives and negatives:
            roc.append({'threshold': round(m.threshold, 4), 'fpr': m.false_positives / negatives,
                        'tpr': m.true_positives / positives})
        if m.true_positives + m.false_positives and positives:
            pr.append({'threshold': round(m.threshold, 4), 'recall': m.true_positives / positives,
                       'precision': m.true_positives / (m.true_positives + m.false_positives)})
    buckets = [{'prediction': 0.0, 'label': 0.0, 'count': 0.0} for _ in range(CALIBRATION_BUCKETS)]
    for b in plot.calibration_histogram_buckets.buckets:
        count = b.num_weighted_examples.value
        if not count:
            continue
        low = b.lower_threshold_inclusive
        i = min(CALIBRATION_BUCKETS - 1, max(0, int((low if math.isfinite(low) else 0.0)
                                                   * CALIBRATION_BUCKETS)))
        buckets[i]['prediction'] += b.total_weighted_refined_prediction.value
        buckets[i]['label'] += b.total_weighted_label.value
        buckets[i]['count'] += count
    calibration = [{'prediction': b['prediction'] / b['count'], 'label': b['label'] / b['count'],
                    'count': b['count']} for b in buckets if b['count']]
    return {'roc': roc, 'pr': pr, 'calibration': calibration}


def class_names(transform_graph_uri: Optional[str]) -> List[str]:
    """The label vocabulary (class id -> name) Transform wrote for a multi-class task."""
    if not transform_graph_uri:
        return []
    path = os.path.join(transform_graph_uri, 'transform_fn', 'assets', LABEL_VOCAB)
    if not os.path.exists(path):
        return []
    with open(path, encoding='utf-8') as f:
        return [line.rstrip('\n') for line in f]


def confusion_matrix(plot, names: List[str]) -> List[Dict[str, Any]]:
    matrices = list(plot.multi_class_confusion_matrix_at_thresholds.matrices)
    if not matrices:
        return []
    matrix = min(matrices, key=lambda m: abs(m.threshold))  # top-1 prediction
    totals: Dict[int, float] = {}
    for e in matrix.entries:
        totals[e.actual_class_id] = totals.get(e.actual_class_id, 0.0) + e.num_weighted_examples

    def name(i: int) -> str:
        return names[i] if 0 <= i < len(names) else ('(none)' if i < 0 else str(i))
    return [{'actual': name(e.actual_class_id), 'predicted': name(e.predicted_class_id),
             'count': e.num_weighted_examples,
             'share': e.num_weighted_examples / totals[e.actual_class_id]
             if totals.get(e.actual_class_id) else 0.0} for e in matrix.entries]


def task_plots(uri: str, task: str, transform_graph_uri: Optional[str]) -> Dict[str, Any]:
    """The overall slice's plots, per model (candidate, baseline)."""
    import tensorflow_model_analysis as tfma

    found: Dict[str, Dict[str, Any]] = {}
    names = class_names(transform_graph_uri) if task == 'multiclass' else []
    for plots in tfma.load_plots(uri):
        if plots.slice_key.single_slice_keys:
            continue
        for kv in plots.plot_keys_and_values:
            side = BASELINE if kv.key.model_name == BASELINE else CANDIDATE
            if task == 'binary' and kv.value.confusion_matrix_at_thresholds.matrices:
                found.setdefault(side, {}).update(binary_curves(kv.value))
            elif task == 'multiclass' and kv.value.multi_class_confusion_matrix_at_thresholds.matrices:
                found.setdefault(side, {})['confusion'] = confusion_matrix(kv.value, names)
    return found


def regression_sample(model_uri: str, examples_uri: str, label: str,
                      limit: int = REGRESSION_SAMPLE) -> List[Dict[str, float]]:
    """[{actual, predicted, residual}] for the first ``limit`` eval rows with a label, scored
    by the model's serving signature."""
    import tensorflow as tf

    from pipeline.html_report.data import eval_records

    serialized, labels = [], []
    for record in eval_records(examples_uri, limit * 2):
        feature = tf.train.Example.FromString(record).features.feature.get(label)
        values = (list(feature.float_list.value) or list(feature.int64_list.value)) if feature else []
        if values:
            serialized.append(record)
            labels.append(float(values[0]))
        if len(serialized) >= limit:
            break
    if not serialized:
        return []
    model = load_saved_model(os.path.join(model_uri, 'Format-Serving'))
    predicted = model.signatures[SERVING_DEFAULT](examples=tf.constant(serialized))
    values = predicted[OUTPUT_KEYS['regression']].numpy().reshape(-1)
    return [{'actual': a, 'predicted': float(p), 'residual': a - float(p)}
            for a, p in zip(labels, values)]


def _bound(t: Dict[str, Any]) -> str:
    parts = []
    if t.get('lower') is not None:
        parts.append(f'>= {t["lower"]:g}')
    if t.get('upper') is not None:
        parts.append(f'<= {t["upper"]:g}')
    return ' and '.join(parts)


def threshold_rows(summary: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each configured threshold, the value it was checked on, and its verdict."""
    ev = summary.get('evaluation') or {}
    metrics, baseline = ev.get('metrics', {}), ev.get('baseline_metrics', {})
    failures = ev.get('failures', [])
    rows = []
    for t in summary.get('thresholds', []):
        failed = [f for f in failures if f['metric'] == t['metric'] and not f['diff_vs_baseline']]
        rows.append({'metric': t['metric'], 'kind': 'value', 'bound': _bound(t),
                     'value': metrics.get(t['metric']), 'baseline': None,
                     'verdict': 'fail' if failed else 'pass'})
    for t in summary.get('change_thresholds', []):
        higher = t.get('higher_is_better', True)
        name = t['metric']
        bound = (f'may {"drop" if higher else "rise"} at most {t.get("max_decrease", 0):g} '
                 f'from the baseline')
        if name not in baseline:
            rows.append({'metric': name, 'kind': 'change', 'bound': bound,
                         'value': metrics.get(name), 'baseline': None,
                         'verdict': 'not applied (no baseline)'})
            continue
        failed = [f for f in failures if f['metric'] == name and f['diff_vs_baseline']]
        rows.append({'metric': name, 'kind': 'change', 'bound': bound,
                     'value': metrics.get(name), 'baseline': baseline[name],
                     'verdict': 'fail' if failed else 'pass'})
    trivial = ev.get('trivial')
    if summary.get('beat_trivial') and trivial:  # the gate evaluation.beat_trivial adds
        failed = [f for f in failures if f['metric'] == GAIN_OVER_TRIVIAL]
        rows.append({'metric': trivial['metric'], 'kind': 'trivial',
                     'bound': f'{"<" if lower_is_better(trivial["metric"]) else ">"} '
                              f'{_fmt(trivial["trivial"])}, a trivial model\'s '
                              f'({trivial["trivial_model"]}; evaluation.beat_trivial)',
                     'value': trivial['value'], 'baseline': None,
                     'verdict': 'fail' if failed else 'pass'})
    return rows


def _fmt(value) -> str:
    return 'n/a' if value is None else f'{value:.4f}'


def blessing_sentence(summary: Dict[str, Any], thresholds: List[Dict[str, Any]]) -> str:
    """Why the model was blessed or not, in one sentence."""
    ev = summary.get('evaluation')
    blessed = summary.get('blessed')
    if ev is None or blessed is None:
        return 'Not evaluated: the run ended before the Evaluator.'
    checked = [t for t in thresholds if t['verdict'] in ('pass', 'fail')]
    if blessed:
        held = '; '.join(f'{t["metric"]} {_fmt(t["value"])} ' + (
            t['bound'] if t['kind'] != 'change' else f'vs baseline {_fmt(t["baseline"])}')
            for t in checked)
        first = '' if ev.get('baseline_metrics') else ' There was no baseline yet, so only the value thresholds applied.'
        return f'Blessed: every threshold held ({held}).{first}'
    failed = [t for t in thresholds if t['verdict'] == 'fail']
    if failed:
        return 'Not blessed: ' + '; '.join(
            f'{t["metric"]} {_fmt(t["value"])} fails {t["bound"]}' + (
                f' (baseline {_fmt(t["baseline"])})' if t['kind'] == 'change' else '')
            for t in failed) + '.'
    if ev.get('missing_thresholds') or not checked:
        return 'Not blessed: no threshold is configured, and TFMA blesses nothing without one.'
    return 'Not blessed: see the failed checks below.'


def gather_evaluation(nodes, summary: Dict[str, Any], task: str) -> Optional[Dict[str, Any]]:
    from pipeline.html_report.data import output

    artifact = output(nodes, 'Evaluator', 'evaluation')
    if artifact is None:
        return None
    thresholds = threshold_rows(summary)
    transform = output(nodes, 'Transform', 'transform_graph')
    result = {
        'artifact': artifact.uri,
        'baseline_model': (summary.get('evaluation') or {}).get('baseline_model'),
        'slices': metrics_by_slice(artifact.uri),
        'thresholds': thresholds,
        'blessed': summary.get('blessed'),
        'why': blessing_sentence(summary, thresholds),
        'notes': evaluation_notes(summary),
        'plots': task_plots(artifact.uri, task, transform.uri if transform else None),
    }
    if task == 'regression':
        model = output(nodes, 'Trainer', 'model')
        examples = nodes['Evaluator'].inputs.get('examples') if 'Evaluator' in nodes else None
        label = (nodes['Trainer'].prop('custom_config', {}) or {}).get('features', {}).get('label')
        if model is not None and examples and label:
            result['plots'].setdefault(CANDIDATE, {})['residuals'] = regression_sample(
                model.uri, examples[0].uri, label)
    return result
