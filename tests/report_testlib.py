"""Shared state for the report and run-browser tests (tests/test_html_report.py,
tests/test_runs.py, and the multi-class run of tests/test_second_dataset.py).

``regression_store()`` builds, once per test session, one pipeline root and metadata store
with three runs of a small synthetic regression dataset (house prices), through the
command line as a user runs it:

1. ``first``: 300 rows; the schema is drafted from them; blessed and pushed;
2. ``refused``: one row gets a neighbourhood the schema does not know: the AnomalyGate
   stops the run (nothing trained);
3. ``second``: that row fixed and 60 rows more, 200 training steps instead of 150:
   blessed against the first model and pushed.

``open_report`` opens a report in headless Chromium (tests/browser.py), writes its
screenshot under ``ARTIFACTS`` and checks what every report must satisfy: it finished
drawing, with no console error, no exception and no network request.
"""
import json
import os
import random
from typing import Any, Dict, List

import browser
import validation_testlib as lib
from testlib import FAST_TRAINING, REPO, write_csv

ARTIFACTS = os.environ.get('TEST_ARTIFACTS') or os.path.join(REPO, 'output', 'test-artifacts')
NEIGHBOURHOODS = {'harbour': 40_000.0, 'hills': 90_000.0, 'centre': 120_000.0, 'fields': 0.0}

REGRESSION_CONFIG = """
name: houses
data:
  root: {root}/data
  label: price
  task: regression
  schema: {root}/schema/schema.pbtxt   # drafted by the first run
training: {training}
evaluation:
  slices: [[neighbourhood]]
  thresholds:
    - {{metric: mean_absolute_error, upper: 1.0e+9}}
  change_thresholds:
    - {{metric: mean_absolute_error, max_decrease: 1.0e+9, higher_is_better: false}}
paths:
  pipeline_root: {root}/pipeline
  metadata: {root}/metadata.sqlite
  serving_dir: {root}/serving
"""

_STATE: Dict[str, Any] = {}


def write_houses(path: str, n: int, seed: int = 0, bad_row: int = -1) -> None:
    """``n`` houses; the price (in 100,000s) depends on every column. Row ``bad_row`` gets a
    neighbourhood no other row has."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        place = rng.choice(sorted(NEIGHBOURHOODS))
        sqft, rooms, age = rng.uniform(40, 220), rng.randint(1, 7), rng.randint(0, 90)
        price = (2_000 * sqft + 15_000 * rooms + NEIGHBOURHOODS[place] - 500 * age
                 + rng.gauss(0, 20_000))
        # In units of 100,000: a scale the briefly trained model reaches.
        rows.append([round(sqft, 1), rooms, 'moon' if i == bad_row else place, age,
                     round(price / 100_000, 4)])
    write_csv(path, ['sqft', 'rooms', 'neighbourhood', 'age', 'price'], rows)


def run_cli(args: List[str]) -> Dict[str, Any]:
    import pipeline_runner
    summary_path = os.path.join(os.path.dirname(args[args.index('--config') + 1]),
                                f'summary-{len(_STATE.get("runs", []))}.json')
    code = pipeline_runner.main(args + ['--summary-json', summary_path])
    with open(summary_path, encoding='utf-8') as f:
        return {'code': code, 'summary': json.load(f)}


def regression_store() -> Dict[str, Any]:
    """The three runs described in the module docstring (built on first call)."""
    if _STATE:
        return _STATE
    root = lib.scratch('houses')
    data_csv = os.path.join(root, 'data', 'houses.csv')
    os.makedirs(os.path.dirname(data_csv))
    config_path = os.path.join(root, 'houses.yaml')
    with open(config_path, 'w', encoding='utf-8') as f:
        f.write(REGRESSION_CONFIG.format(root=root, training=FAST_TRAINING))
    args = ['--config', config_path]
    write_houses(data_csv, 300)
    first = run_cli(args)
    write_houses(data_csv, 300, bad_row=7)
    refused = run_cli(args)
    write_houses(data_csv, 360)
    second = run_cli(args + ['--train-steps', '200'])
    _STATE.update(root=root, config=config_path, data_csv=data_csv, first=first,
                  refused=refused, second=second,
                  metadata=os.path.join(root, 'metadata.sqlite'),
                  pipeline_root=os.path.join(root, 'pipeline'))
    return _STATE


def open_report(path: str, name: str, values: Dict[str, str] = None) -> Dict[str, Any]:
    """Opens the report at ``path``; asserts it drew every chart with no console error, no
    exception and no network request; returns the DOM ``values`` asked for (JavaScript
    expressions), plus 'charts' (drawn) and 'placed' (chart slots)."""
    if not browser.available():
        import pytest
        message = 'needs Debian\'s chromium (apt-get install -y chromium)'
        if os.environ.get('CI'):
            pytest.fail(message + ': CI must install it')
        pytest.skip(message)
    os.makedirs(ARTIFACTS, exist_ok=True)
    screenshot = os.path.join(ARTIFACTS, f'{name}.png')
    wanted = dict(values or {}, charts='Number(document.body.dataset.charts)',
                  placed='document.querySelectorAll("[data-chart]").length',
                  chart_ids='Array.from(document.querySelectorAll(".chart.drawn"))'
                            '.map(e => e.dataset.chart)')
    result = browser.open_page(path, screenshot=screenshot, values=wanted)
    assert result['console_errors'] == [], result['console_errors']
    assert result['exceptions'] == [], result['exceptions']
    assert result['requests'] == [], result['requests']
    assert os.path.getsize(screenshot) > 10_000, 'the screenshot is (nearly) empty'
    out = result['values']
    assert out['charts'] == out['placed'], f'{out["placed"] - out["charts"]} charts not drawn'
    print(f'screenshot of {path}: {screenshot}')
    return out


def text(selector: str) -> str:
    """A JavaScript expression: the text of the first element matching ``selector``."""
    return f'(document.querySelector({json.dumps(selector)}) || {{}}).textContent'


def texts(selector: str) -> str:
    return (f'Array.from(document.querySelectorAll({json.dumps(selector)}))'
            f'.map(e => e.textContent.trim())')
