"""Vega-Lite specs for the report's charts: plain dicts, data inlined, one function each.

The page renders them with vega-embed (``assets/``); hovering a mark shows its values.
Candidate and baseline, or train and eval, share one chart wherever both exist, in the same
two colours throughout the report.
"""
from typing import Any, Dict, List, Optional

SERIES_COLORS = {'candidate': '#1f6fb2', 'baseline': '#b5b5b5', 'train': '#1f6fb2',
                 'eval': '#e07b39', 'validation': '#e07b39'}
STATE_COLORS = {'ran': '#2e8b57', 'cached': '#9bb7d4', 'failed': '#c0392b',
                'running': '#e0a030', 'canceled': '#888888', 'new': '#cccccc'}


def _scale(names: List[str], colors: Dict[str, str]) -> Dict[str, Any]:
    names = list(dict.fromkeys(names))
    return {'domain': names, 'range': [colors.get(n, '#7f7f7f') for n in names]}


def _spec(data: List[Dict[str, Any]], **spec) -> Dict[str, Any]:
    return {'data': {'values': data}, 'config': {'view': {'stroke': None},
                                                 'axis': {'labelLimit': 180}}, **spec}


def timeline(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Each component as a bar from its start to its end (seconds since the run started)."""
    order = [r['node'] for r in rows]
    return _spec(rows, width='container', height=max(60, 22 * len(rows)), mark={'type': 'bar', 'cornerRadius': 2},
                 encoding={
                     'y': {'field': 'node', 'type': 'nominal', 'sort': order, 'title': None},
                     'x': {'field': 'start', 'type': 'quantitative', 'title': 'seconds since the run started'},
                     'x2': {'field': 'bar_end'},
                     'color': {'field': 'state', 'type': 'nominal', 'title': 'state',
                               'scale': _scale([r['state'] for r in rows], STATE_COLORS)},
                     'tooltip': [{'field': 'node'}, {'field': 'state'},
                                 {'field': 'seconds', 'format': '.1f', 'title': 'seconds'},
                                 {'field': 'start', 'format': '.1f', 'title': 'started at'}]})


def histogram(feature: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Train and eval of one feature: the value histogram (numbers) or the top values."""
    rows = []
    for split, stats in feature['splits'].items():
        for b in stats.get('histogram') or []:
            rows.append({'split': split, 'low': b['low'], 'high': b['high'],
                         'share': b['fraction']})
        for t in stats.get('top') or []:
            rows.append({'split': split, 'value': t['value'], 'share': t['fraction']})
    if not rows:
        return None
    splits = list(feature['splits'])
    color = {'field': 'split', 'type': 'nominal', 'scale': _scale(splits, SERIES_COLORS),
             'legend': None}
    share = {'field': 'share', 'type': 'quantitative', 'axis': {'format': '%', 'tickCount': 3},
             'title': None}
    if 'low' in rows[0]:
        # The first split filled, the others outlined on top: both stay readable.
        encoding = {'x': {'field': 'low', 'type': 'quantitative', 'bin': 'binned', 'title': None,
                          'axis': {'tickCount': 4, 'format': '~s'}},
                    'x2': {'field': 'high'}, 'y': dict(share, stack=None),
                    'color': color, 'stroke': color,
                    'tooltip': [{'field': 'split'}, {'field': 'low', 'format': ',.4~g'},
                                {'field': 'high', 'format': ',.4~g'},
                                {'field': 'share', 'format': '.1%'}]}
        return _spec(rows, width=190, height=64, encoding=encoding, layer=[
            {'transform': [{'filter': {'field': 'split', 'equal': splits[0]}}],
             'mark': {'type': 'bar', 'opacity': 0.6}},
            {'transform': [{'filter': {'field': 'split', 'oneOf': splits[1:]}}],
             'mark': {'type': 'bar', 'fillOpacity': 0, 'strokeWidth': 1.5}}])
    return _spec(rows, width=190, height={'step': 7}, mark='bar',
                 encoding={'y': {'field': 'value', 'type': 'nominal', 'sort': None, 'title': None,
                                 'axis': {'labelLimit': 110, 'labelFontSize': 9}},
                           'yOffset': {'field': 'split', 'sort': splits},
                           'x': share, 'color': color,
                           'tooltip': [{'field': 'split'}, {'field': 'value'},
                                       {'field': 'share', 'format': '.1%'}]})


def drift(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Each feature's distance to the previous span, with its threshold as a tick."""
    base = {'y': {'field': 'feature', 'type': 'nominal', 'sort': '-x', 'title': None}}
    tooltip = [{'field': 'feature'}, {'field': 'measure'}, {'field': 'value', 'format': '.4f'},
               {'field': 'threshold', 'format': '.4f'}]
    return _spec(rows, width='container', height={'step': 18}, layer=[
        {'mark': 'bar', 'encoding': dict(base, x={'field': 'value', 'type': 'quantitative',
                                                    'title': 'distance to the previous span'},
                                         color={'field': 'drifted', 'type': 'nominal',
                                                'scale': {'domain': [False, True],
                                                          'range': ['#9bb7d4', '#c0392b']},
                                                'title': 'beyond threshold'},
                                         tooltip=tooltip)},
        {'mark': {'type': 'tick', 'color': 'black', 'thickness': 2},
         'encoding': dict(base, x={'field': 'threshold', 'type': 'quantitative'},
                          tooltip=tooltip)}])


def curves(points: List[Dict[str, Any]], metric: str,
           stop: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """One metric per training step, train and validation, the early-stopping point marked."""
    rows = [p for p in points if p['metric'] == metric]
    splits = [p['split'] for p in rows]
    layers: List[Dict[str, Any]] = [{
        'mark': {'type': 'line', 'point': True},
        'encoding': {'x': {'field': 'step', 'type': 'quantitative', 'title': 'training step'},
                     'y': {'field': 'value', 'type': 'quantitative', 'title': metric,
                           'scale': {'zero': False}},
                     'color': {'field': 'split', 'type': 'nominal', 'scale': _scale(splits, SERIES_COLORS)},
                     'tooltip': [{'field': 'split'}, {'field': 'step'},
                                 {'field': 'value', 'format': '.4f', 'title': metric}]}}]
    if stop:
        layers.append({'data': {'values': [{'step': stop['best_step'],
                                            'what': 'early stopping: weights restored from here'}]},
                       'mark': {'type': 'rule', 'strokeDash': [4, 3], 'color': '#c0392b'},
                       'encoding': {'x': {'field': 'step', 'type': 'quantitative'},
                                    'tooltip': [{'field': 'what'}, {'field': 'step'}]}})
    return _spec(rows, width=340, height=180, title=metric, layer=layers)


def _diagonal() -> Dict[str, Any]:
    return {'data': {'values': [{'x': 0, 'y': 0}, {'x': 1, 'y': 1}]},
            'mark': {'type': 'line', 'strokeDash': [4, 3], 'color': '#999'},
            'encoding': {'x': {'field': 'x', 'type': 'quantitative'},
                         'y': {'field': 'y', 'type': 'quantitative'}}}


def _by_model(plots: Dict[str, Dict[str, Any]], key: str) -> List[Dict[str, Any]]:
    return [dict(p, model=model) for model, found in plots.items() for p in found.get(key, [])]


def roc(plots: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    rows = _by_model(plots, 'roc')
    return _spec(rows, width=260, height=260, title='ROC', layer=[_diagonal(), {
        'mark': 'line',
        'encoding': {'x': {'field': 'fpr', 'type': 'quantitative', 'title': 'false positive rate'},
                     'y': {'field': 'tpr', 'type': 'quantitative', 'title': 'true positive rate'},
                     'order': {'field': 'threshold', 'sort': 'descending'},
                     'color': {'field': 'model', 'type': 'nominal',
                               'scale': _scale([r['model'] for r in rows], SERIES_COLORS)},
                     'tooltip': [{'field': 'model'}, {'field': 'threshold'},
                                 {'field': 'fpr', 'format': '.3f'}, {'field': 'tpr', 'format': '.3f'}]}}])


def precision_recall(plots: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    rows = _by_model(plots, 'pr')
    return _spec(rows, width=260, height=260, title='Precision-recall', mark='line', encoding={
        'x': {'field': 'recall', 'type': 'quantitative', 'scale': {'domain': [0, 1]}},
        'y': {'field': 'precision', 'type': 'quantitative', 'scale': {'domain': [0, 1]}},
        'order': {'field': 'threshold', 'sort': 'descending'},
        'color': {'field': 'model', 'type': 'nominal',
                  'scale': _scale([r['model'] for r in rows], SERIES_COLORS)},
        'tooltip': [{'field': 'model'}, {'field': 'threshold'},
                    {'field': 'recall', 'format': '.3f'}, {'field': 'precision', 'format': '.3f'}]})


def calibration(plots: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    rows = _by_model(plots, 'calibration')
    return _spec(rows, width=260, height=260, title='Calibration', layer=[_diagonal(), {
        'mark': {'type': 'line', 'point': True},
        'encoding': {'x': {'field': 'prediction', 'type': 'quantitative', 'title': 'mean prediction',
                           'scale': {'domain': [0, 1]}},
                     'y': {'field': 'label', 'type': 'quantitative', 'title': 'share of positives',
                           'scale': {'domain': [0, 1]}},
                     'color': {'field': 'model', 'type': 'nominal',
                               'scale': _scale([r['model'] for r in rows], SERIES_COLORS)},
                     'tooltip': [{'field': 'model'}, {'field': 'prediction', 'format': '.3f'},
                                 {'field': 'label', 'format': '.3f'},
                                 {'field': 'count', 'format': ',.0f', 'title': 'examples'}]}}])


def confusion(rows: List[Dict[str, Any]], title: str) -> Dict[str, Any]:
    """Actual class against predicted class, shaded by the share of the actual class."""
    names = sorted({r['actual'] for r in rows} | {r['predicted'] for r in rows})
    axis = {'type': 'nominal', 'sort': names}
    return _spec(rows, width={'step': 44}, height={'step': 44}, title=title,
                 encoding={'x': dict(axis, field='predicted', title='predicted class'),
                           'y': dict(axis, field='actual', title='actual class')},
                 layer=[{'mark': 'rect', 'encoding': {
                     'color': {'field': 'share', 'type': 'quantitative',
                               'scale': {'scheme': 'blues', 'domain': [0, 1]},
                               'title': 'share of actual'},
                     'tooltip': [{'field': 'actual'}, {'field': 'predicted'},
                                 {'field': 'count', 'format': ',.0f'},
                                 {'field': 'share', 'format': '.1%'}]}},
                        {'mark': {'type': 'text', 'fontSize': 11}, 'encoding': {
                            'text': {'field': 'count', 'format': ',.0f'},
                            'color': {'condition': {'test': 'datum.share > 0.5', 'value': 'white'},
                                      'value': 'black'}}}])


def predicted_vs_actual(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    values = [r['actual'] for r in rows] + [r['predicted'] for r in rows]
    low, high = (min(values), max(values)) if values else (0, 1)
    x = {'type': 'quantitative', 'title': 'actual', 'scale': {'zero': False}}
    y = {'type': 'quantitative', 'title': 'predicted', 'scale': {'zero': False}}
    return _spec(rows, width=300, height=300, title='Predicted against actual', layer=[
        {'data': {'values': [{'x': low, 'y': low}, {'x': high, 'y': high}]},
         'mark': {'type': 'line', 'strokeDash': [4, 3], 'color': '#999'},
         'encoding': {'x': dict(x, field='x'), 'y': dict(y, field='y')}},
        {'mark': {'type': 'point', 'filled': True, 'opacity': 0.6, 'size': 16},
         'encoding': {'x': dict(x, field='actual'), 'y': dict(y, field='predicted'),
                      'color': {'value': SERIES_COLORS['candidate']},
                      'tooltip': [{'field': 'actual', 'format': '.4~g'},
                                  {'field': 'predicted', 'format': '.4~g'}]}}])


def residuals(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    y = {'type': 'quantitative', 'title': 'actual - predicted'}
    return _spec(rows, width=300, height=300, title='Residuals', layer=[
        {'data': {'values': [{'y': 0}]}, 'mark': {'type': 'rule', 'color': '#999'},
         'encoding': {'y': dict(y, field='y')}},
        {'mark': {'type': 'point', 'filled': True, 'opacity': 0.6, 'size': 16},
         'encoding': {'x': {'field': 'predicted', 'type': 'quantitative', 'scale': {'zero': False}},
                      'y': dict(y, field='residual'),
                      'color': {'value': SERIES_COLORS['candidate']},
                      'tooltip': [{'field': 'predicted', 'format': '.4~g'},
                                  {'field': 'residual', 'format': '.4~g'}]}}])


def slices(rows: List[Dict[str, Any]], metrics: List[str]) -> Dict[str, Any]:
    """Each metric for each slice, candidate and baseline side by side; a menu picks the
    metric (the first is shown first)."""
    data = [{'slice': r['slice'], 'model': model, 'metric': m, 'value': r[model][m],
             'examples': r['candidate'].get('example_count')}
            for r in rows for model in ('candidate', 'baseline') for m in metrics
            if r[model].get(m) is not None]
    models = [d['model'] for d in data]
    return _spec(data, width='container', height={'step': 9}, mark='bar',
                 params=[{'name': 'metric', 'value': metrics[0],
                          'bind': {'input': 'select', 'options': metrics, 'name': 'metric '}}],
                 transform=[{'filter': 'datum.metric === metric'}],
                 encoding={'y': {'field': 'slice', 'type': 'nominal', 'sort': None, 'title': None},
                           'yOffset': {'field': 'model', 'sort': ['candidate', 'baseline']},
                           'x': {'field': 'value', 'type': 'quantitative', 'title': None,
                                 'scale': {'zero': False}},
                           'color': {'field': 'model', 'type': 'nominal',
                                     'scale': _scale(models, SERIES_COLORS)},
                           'tooltip': [{'field': 'slice'}, {'field': 'model'}, {'field': 'metric'},
                                       {'field': 'value', 'format': '.4f'},
                                       {'field': 'examples', 'format': ',.0f'}]})


def previous_runs(rows: List[Dict[str, Any]], metric: str) -> Dict[str, Any]:
    data = [r for r in rows if r.get('metric_value') is not None]
    return _spec(data, width='container', height=160, title=f'{metric} of each run',
                 mark={'type': 'line', 'point': {'size': 60}},
                 encoding={'x': {'field': 'run_id', 'type': 'ordinal', 'title': None,
                                 'axis': {'labelAngle': -30}},
                           'y': {'field': 'metric_value', 'type': 'quantitative', 'title': metric,
                                 'scale': {'zero': False}},
                           'color': {'value': SERIES_COLORS['candidate']},
                           'tooltip': [{'field': 'run_id'}, {'field': 'status'},
                                       {'field': 'metric_value', 'format': '.4f', 'title': metric},
                                       {'field': 'version', 'title': 'pushed'}]})
