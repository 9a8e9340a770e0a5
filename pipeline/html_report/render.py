"""Turning the gathered content into one self-contained HTML file.

The page is ``templates/report.html.j2`` (Jinja2, autoescaped), with its stylesheet and
script and the three Vega files (``assets/``) inlined, and every chart's Vega-Lite spec in
one JSON block. A Content-Security-Policy meta tag allows nothing but the inline code and
``data:``/``blob:`` images (a chart's PNG/SVG export), so the page cannot make a network
request even by mistake; vega-embed runs with its expression interpreter (``ast: true``),
which needs no ``eval``.
"""
import datetime
import functools
import math
import os
import re
from typing import Any, Dict, Optional

from pipeline.html_report import charts

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.join(HERE, 'assets')
SCRIPTS = ('vega.min.js', 'vega-lite.min.js', 'vega-embed.min.js')
_SOURCE_MAP = re.compile(r'^//# sourceMappingURL=.*$', re.M)


@functools.lru_cache(maxsize=None)
def _asset(name: str, directory: str = ASSETS) -> str:
    with open(os.path.join(directory, name), encoding='utf-8') as f:
        text = f.read()
    # No source-map fetch, and no early end of the inline <script>.
    return _SOURCE_MAP.sub('', text).replace('</script', '<\\/script')


def _num(value: Any, digits: int = 4) -> str:
    """A number for a table: ``digits`` decimals (0: a whole count, with separators)."""
    if value is None or value == '':
        return '–'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, int):
        return f'{value:,}'
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if digits == 0:
            return f'{value:,.0f}'
        if value.is_integer() and abs(value) >= 1000:
            return f'{int(value):,}'
        return f'{value:.{digits}f}' if abs(value) < 1e6 else f'{value:.4g}'
    return str(value)


def _short(value: Any) -> str:
    """A summary statistic, in a width that fits a table cell."""
    if value is None:
        return '–'
    if isinstance(value, float) and math.isfinite(value):
        return f'{value:,.4g}' if abs(value) >= 1e5 or (value and abs(value) < 1e-3) else f'{value:,.4f}'.rstrip('0').rstrip('.')
    return _num(value)


def _pct(value: Optional[float]) -> str:
    if value is None:
        return '–'
    if 0 < value < 0.001:
        return '<0.1%'
    if 0.999 < value < 1:
        return '>99.9%'
    return f'{value * 100:.1f}%'


def _when(ms: Optional[int]) -> str:
    if not ms:
        return '–'
    return datetime.datetime.fromtimestamp(ms / 1000).strftime('%Y-%m-%d %H:%M:%S')


def _ms(seconds: Any) -> str:
    """A latency in seconds, as milliseconds."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return '–'
    return f'{seconds * 1000:.3f} ms'


def _size(n: Optional[int]) -> str:
    if n is None:
        return '–'
    for unit in ('bytes', 'KB', 'MB', 'GB'):
        if n < 1024 or unit == 'GB':
            return f'{n:,} {unit}' if unit == 'bytes' else f'{n:.1f} {unit}'
        n /= 1024
    return str(n)


def chart_specs(page: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Every chart of the page, by the id the template places it under."""
    specs: Dict[str, Dict[str, Any]] = {}
    run = page.get('run') or {}
    if run.get('timeline'):
        specs['timeline'] = charts.timeline(run['timeline'])
    data = page.get('data') or {}
    for i, feature in enumerate(data.get('features') or []):
        spec = charts.histogram(feature)
        if spec:
            specs[f'feature-{i}'] = spec
    measurements = (data.get('drift') or {}).get('measurements')
    if measurements:
        specs['drift'] = charts.drift(measurements)
    training = page.get('training') or {}
    metrics = list(dict.fromkeys(p['metric'] for p in training.get('curves') or []))
    for metric in metrics:
        specs[f'curve-{metric}'] = charts.curves(training['curves'], metric,
                                                 training.get('early_stopping'))
    ev = page.get('evaluation') or {}
    plots = ev.get('plots') or {}
    if any(p.get('roc') for p in plots.values()):
        specs['roc'] = charts.roc(plots)
        specs['pr'] = charts.precision_recall(plots)
        specs['calibration'] = charts.calibration(plots)
    for model, found in plots.items():
        if found.get('confusion'):
            specs[f'confusion-{model}'] = charts.confusion(found['confusion'], f'{model} model')
        if found.get('residuals'):
            specs['predicted-actual'] = charts.predicted_vs_actual(found['residuals'])
            specs['residuals'] = charts.residuals(found['residuals'])
    slices = ev.get('slices') or []
    if len(slices) > 1:
        metric = (page.get('key') or {}).get('metric')
        names = [m for m in slices[0]['candidate'] if m != 'example_count'] or ['example_count']
        specs['slices'] = charts.slices(slices, ([metric] if metric in names else [])
                                        + [m for m in names if m != metric])
    previous = page.get('previous_runs') or []
    if sum(r.get('metric_value') is not None for r in previous) > 1:
        specs['runs'] = charts.previous_runs(previous, previous[-1]['metric'])
    return specs


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2

    # The compiled template is cached in the user's temporary directory (Jinja's default
    # place, keyed on the template's source): compiling it takes ~0.3 s of every report.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, 'templates')),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.ChainableUndefined,
                             bytecode_cache=jinja2.FileSystemBytecodeCache())
    env.filters.update(num=_num, short=_short, pct=_pct, when=_when, size=_size, ms=_ms)
    return env


def render_page(page: Dict[str, Any]) -> str:
    specs = chart_specs(page)
    return _environment().get_template('report.html.j2').render(
        page=page, charts=specs, style=_asset('report.css', os.path.join(HERE, 'templates')),
        script=_asset('report.js', os.path.join(HERE, 'templates')),
        libraries=[_asset(name) for name in SCRIPTS],
        generated=datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S'))
