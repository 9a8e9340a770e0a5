"""Batch predictions on Beam's RunInference: CSV files in, one prediction row per input row out.

Used by ``pipeline_runner.py predict`` (``pipeline/predict.py``) and by the BulkInferrer node
(``components/bulk_inferrer``). The job, on any Beam runner:

  files ─> ReadChunks (pyarrow's streaming CSV reader, ~1 MB blocks: a chunk is an Arrow
  record batch of a few thousand rows, never one element per row)
        ─> Check (each cell checked against its feature's type; bad rows become rejects;
           these two are the ReadAndCheck step)
        ─> RunInference (one signature call per chunk: ``serving_json`` on the chunk's
           columns, converted by ExampleGen's cell rules, when the model has it; else
           ``serving_default`` on the rows encoded as tf.Examples: ChunkModelHandler)
        ─> WriteShard (the chunk's predictions and rejects, to ``<out>.parts/``)
  then, in the launching process, the shards are joined in input order into the output file
  (CSV or Parquet) and the rejects file, one shard in memory at a time.

So memory stays flat in the number of rows, the output keeps the input's order whatever the
runner did, and a failed job leaves the previous output file as it was (the joined files are
renamed into place at the end).

Rows: a row's ``line`` is the physical line it starts on (the header is line 1; a quoted value
spanning lines is counted). A row is rejected, with its file, line and reason, when it has the
wrong number of cells, a cell that is not UTF-8, or a feature cell that is not of the
feature's type (an integer feature takes what ``int()`` takes, a float one what ``float()``
takes, as ExampleGen reads them). A missing cell (empty, or one of ``data.na_values``) is a
missing value, as in training. The delimiter is ``data.delimiter`` or the one detected in each
file, which may be gzipped. Columns the model does not take (the label, say) are ignored.
"""
import dataclasses
import os
import shutil
import uuid
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from pyarrow import compute as pc
from pyarrow import csv as pa_csv
from pyarrow import parquet as pq

from components import csv_format

LINE, FILE = 'line', 'file'
REJECT_COLUMNS = (FILE, LINE, 'reason')
FORMATS = {'.csv': 'csv', '.parquet': 'parquet'}
CHUNK_BYTES = 1 << 20
FLOAT, INT, STRING = 'float', 'int', 'string'
_NOT_OF_TYPE = {INT: 'is not an integer', FLOAT: 'is not a number'}


class InputError(ValueError):
    """The job cannot start: the message names the file, column or option at fault."""


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything the Beam job needs, decided before it starts."""
    model_path: str
    files: Tuple[str, ...]
    # The ``file`` column's value for each file (paths relative to the input directory);
    # empty when the input is one file (no ``file`` column).
    file_names: Tuple[str, ...]
    features: Dict[str, str]  # raw feature -> FLOAT, INT or STRING
    output: str
    keep: Tuple[str, ...] = ()
    signature: str = 'serving_default'  # takes serialized tf.Examples
    # Takes one tensor per raw feature; used instead when the model has it (ChunkModelHandler).
    raw_signature: str = 'serving_json'
    chunk_bytes: int = CHUNK_BYTES
    # How the files are read, as the run reads its data (``data.*``): the delimiter ('':
    # detected in each file), the encoding, and the cells that mean "missing".
    delimiter: str = ''
    encoding: str = 'utf-8'
    na_values: Tuple[str, ...] = csv_format.NA_VALUES

    def reading(self, path: str) -> csv_format.CsvFormat:
        """How ``path`` is read."""
        return csv_format.resolve(path, self.delimiter, self.encoding, self.na_values)

    @property
    def format(self) -> str:
        return output_format(self.output)

    @property
    def parts(self) -> str:
        return self.output + '.parts'

    @property
    def rejects(self) -> str:
        return rejects_path(self.output)


def output_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise InputError(f'{path}: the output must end in .csv or .parquet, got "{ext}"')
    return FORMATS[ext]


def rejects_path(output: str) -> str:
    """``preds.csv`` / ``preds.parquet`` -> ``preds.rejects.csv``."""
    return os.path.splitext(output)[0] + '.rejects.csv'


def check_inputs(job: 'Job') -> None:
    """Every file must have a header naming every feature and every ``keep`` column."""
    features, keep = job.features, job.keep
    for path in job.files:
        try:
            columns = csv_format.read_header(path, job.reading(path), errors='replace')
        except csv_format.GZIP_ERRORS as e:
            raise InputError(f'{path}: {csv_format.gzip_error(e)}') from None
        if not columns:
            raise InputError(f'{path}: empty file; expected a header row of column names')
        missing = [c for c in features if c not in columns]
        if missing:
            raise InputError(f'{path}: no column {", ".join(map(repr, missing))}, which the '
                               f'model takes (columns: {", ".join(columns)})')
        missing = [c for c in keep if c not in columns]
        if missing:
            raise InputError(f'{path}: no column {", ".join(map(repr, missing))} to keep '
                               f'(--keep; columns: {", ".join(columns)})')
        if len(set(columns)) != len(columns):
            raise InputError(f'{path}: the header names a column twice: {columns}')


# ------------------------------------------------------------------------------------------
# Reading: chunks of rows, with their physical line numbers and the invalid rows' rejects.


class _Lines:
    """Physical line numbers of the rows pyarrow yields, from its row numbers: pyarrow numbers
    rows (the header is 1) and skips invalid ones; a row spanning k lines shifts the rest."""

    def __init__(self):
        self.next_row = 2        # pyarrow's number of the next row
        self.shift = 0           # lines spanned beyond one by the rows so far
        self.invalid: Dict[int, Tuple[int, str]] = {}  # row number -> (extra lines, reason)

    def skip(self, row) -> str:  # pyarrow's invalid_row_handler
        self.invalid[row.number] = (row.text.count('\n'),
                                    f'expected {row.expected_columns} cells, got '
                                    f'{row.actual_columns}')
        return 'skip'

    def take(self, extra: np.ndarray) -> Tuple[np.ndarray, List[Tuple[int, str]]]:
        """Lines of the next ``len(extra)`` valid rows (``extra``: lines each spans beyond
        one), and the (line, reason) of the invalid rows before and right after them."""
        lines, rejects = np.empty(len(extra), np.int64), []
        i = 0
        while True:
            while self.next_row in self.invalid:
                more, reason = self.invalid.pop(self.next_row)
                rejects.append((self.next_row + self.shift, reason))
                self.shift += more
                self.next_row += 1
            if i == len(extra):
                return lines, rejects
            # The run of valid rows up to the next invalid one, vectorized.
            upto = min((r for r in self.invalid if r > self.next_row), default=1 << 62)
            run = extra[i:i + min(len(extra) - i, upto - self.next_row)]
            n = len(run)
            lines[i:i + n] = (self.next_row + self.shift + np.arange(n)
                              + np.cumsum(run) - run)
            self.shift += int(run.sum())
            self.next_row += n
            i += n

    def rest(self) -> List[Tuple[int, str]]:
        """Invalid rows after the last valid one."""
        rejects = []
        for number in sorted(self.invalid):
            more, reason = self.invalid.pop(number)
            rejects.append((number + self.shift, reason))
            self.shift += more
        return rejects


def read_chunks(path: str, columns: Sequence[str], fmt: csv_format.CsvFormat,
                chunk_bytes: int = CHUNK_BYTES
                ) -> Iterable[Tuple[pa.RecordBatch, np.ndarray, List[Tuple[int, str]]]]:
    """(cells of ``columns`` as binary, their rows' lines, rejects) per block of the file;
    a missing cell (``fmt.missing``) is null."""
    lines = _Lines()
    names = csv_format.read_header(path, fmt, errors='replace')
    source = csv_format.open_binary(path)  # gunzipped when gzipped
    # The cell rules of ExampleGen's reader (components/csv_format.read_table): every cell as
    # written, a missing one null, quoted newlines allowed.
    reader = pa_csv.open_csv(
        source,
        read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1, use_threads=False,
                                        block_size=chunk_bytes, encoding=fmt.encoding),
        parse_options=pa_csv.ParseOptions(delimiter=fmt.delimiter, newlines_in_values=True,
                                          invalid_row_handler=lines.skip),
        convert_options=pa_csv.ConvertOptions(
            column_types={n: pa.binary() for n in names}, null_values=sorted(fmt.missing),
            strings_can_be_null=True, quoted_strings_can_be_null=True))
    with source:
        yield from _chunks(reader, columns, lines)


def _chunks(reader, columns, lines):
    for batch in reader:
        extra = np.zeros(batch.num_rows, np.int64)
        for column in batch.columns:
            counts = pc.fill_null(pc.count_substring(column, '\n'), 0)
            if pc.max(counts).as_py():
                extra += counts.to_numpy(zero_copy_only=False)
        row_lines, rejects = lines.take(extra)
        yield (pa.RecordBatch.from_arrays([batch.column(c) for c in columns], list(columns)),
               row_lines, rejects)
    rest = lines.rest()
    if rest:
        yield pa.RecordBatch.from_pylist([], schema=pa.schema(
            [(c, pa.binary()) for c in columns])), np.empty(0, np.int64), rest


# ------------------------------------------------------------------------------------------
# Encoding: cells checked against the features' types, good rows as serialized tf.Examples.


def _as_text(cells: pa.Array) -> Tuple[pa.Array, np.ndarray]:
    """The cells as UTF-8 text (a missing one null), and a mask of those that are not UTF-8
    (then null)."""
    try:
        return cells.cast(pa.string()), np.zeros(len(cells), bool)
    except pa.ArrowInvalid:
        values = cells.to_pylist()
        bad = np.zeros(len(values), bool)
        for i, v in enumerate(values):
            try:
                v is None or v.decode('utf-8')
            except UnicodeDecodeError:
                bad[i], values[i] = True, None
        return pa.array(values, pa.binary()).cast(pa.string()), bad


def _not_of_type(text: pa.Array, kind: str) -> np.ndarray:
    """Mask of the present cells that ExampleGen's rules would not read as ``kind``."""
    if kind == STRING:
        return np.zeros(len(text), bool)
    present = text.drop_null()
    try:  # the common case: Arrow parses every value
        pc.cast(present, pa.int64() if kind == INT else pa.float64())
        return np.zeros(len(text), bool)
    except pa.ArrowInvalid:
        pass
    parse = int if kind == INT else float
    bad = []
    for value in pc.unique(present).to_pylist():
        try:
            parse(value)
        except ValueError:
            bad.append(value)
    return pc.fill_null(pc.is_in(text, value_set=pa.array(bad, pa.string())),
                        False).to_numpy(zero_copy_only=False)


def check(batch: pa.RecordBatch, features: Dict[str, str]
          ) -> Tuple[np.ndarray, pa.RecordBatch, List[Tuple[int, str]]]:
    """(mask of accepted rows, their feature cells as text, (row index, reason) rejects)."""
    n = batch.num_rows
    rejected = np.zeros(n, bool)
    reasons: Dict[int, str] = {}
    texts = {}
    for name in batch.schema.names:
        text, not_utf8 = _as_text(batch.column(name))
        texts[name] = text
        masks = [(not_utf8, 'is not UTF-8 text')]
        if name in features:
            masks.append((_not_of_type(text, features[name]), _NOT_OF_TYPE.get(features[name])))
        for mask, what in masks:
            for i in np.flatnonzero(mask & ~rejected):
                shown = batch.column(name)[int(i)].as_py()
                reasons[int(i)] = f'column {name}: {shown.decode("utf-8", "replace")!r} {what}'
            rejected |= mask
    accepted = ~rejected
    good = pa.RecordBatch.from_arrays([texts[f] for f in features], list(features))
    if rejected.any():
        good = good.filter(pa.array(accepted))
    return accepted, good, sorted(reasons.items())


def _column_types(features: Dict[str, str]):
    from tfx_bsl.coders.csv_decoder import ColumnType
    return {name: {INT: ColumnType.INT, FLOAT: ColumnType.FLOAT,
                   STRING: ColumnType.STRING}[kind] for name, kind in features.items()}


def to_examples(rows: pa.RecordBatch, features: Dict[str, str]) -> List[bytes]:
    """Checked rows (``check``) as serialized tf.Examples, through the encoder and the cell
    rules ExampleGen uses."""
    from tfx_bsl.coders import example_coder

    from components.csv_format import to_record_batch
    if not rows.num_rows:
        return []
    return example_coder.RecordBatchToExamplesEncoder().encode(
        to_record_batch(rows, _column_types(features)))


def encode(batch: pa.RecordBatch, features: Dict[str, str]
           ) -> Tuple[np.ndarray, List[bytes], List[Tuple[int, str]]]:
    """(mask of accepted rows, their serialized tf.Examples, (row index, reason) rejects)."""
    accepted, good, rejects = check(batch, features)
    return accepted, to_examples(good, features), rejects


def to_raw_features(rows: pa.RecordBatch, features: Dict[str, str]
                    ) -> Optional[Dict[str, np.ndarray]]:
    """Checked rows as ``serving_json``'s inputs, one [rows] array per raw feature, converted
    by ExampleGen's cell rules (``csv_format.to_values``), a missing cell as the signature's
    missing value ("", NaN, ``MISSING_INT64``). None when a present cell *is* that value (an
    empty string, "nan", int64's smallest value): the signature would read it as missing,
    where a tf.Example has it, so such a chunk goes the tf.Example way."""
    from components.csv_format import to_values
    from components.signatures import MISSING_INT64
    missing = {STRING: b'', FLOAT: np.float32('nan'), INT: MISSING_INT64}
    types = _column_types(features)
    arrays = {}
    for name, kind in features.items():
        values = to_values(rows.column(name), types[name])
        present = values.drop_null()
        if len(present) and (pc.any(pc.is_nan(present)).as_py() if kind == FLOAT
                             else pc.any(pc.equal(present, missing[kind])).as_py()):
            return None
        arrays[name] = values.fill_null(missing[kind]).to_numpy(zero_copy_only=False)
    return arrays


@dataclasses.dataclass
class Chunk:
    file: int
    index: int
    lines: np.ndarray
    keep: Dict[str, List[str]]
    rows: pa.RecordBatch  # the accepted rows' feature cells, as text (``check``)
    rejects: List[Tuple[int, str]]  # (line, reason)


class ReadAndCheck(beam.DoFn):
    """One file's chunks, checked; bad rows ride along as the chunk's rejects."""

    def __init__(self, job: Job):
        self.job = job

    def process(self, file_index: int) -> Iterable[Chunk]:
        job = self.job
        columns = list(dict.fromkeys([*job.features, *job.keep]))
        for index, (batch, lines, rejects) in enumerate(
                read_chunks(job.files[file_index], columns, job.reading(job.files[file_index]),
                            job.chunk_bytes)):
            accepted, rows, bad = check(batch, job.features)
            rejects += [(int(lines[i]), reason) for i, reason in bad]
            keep = {}
            for name in job.keep:
                text, _ = _as_text(batch.column(name))
                keep[name] = text.filter(pa.array(accepted)).to_pylist()
            yield Chunk(file_index, index, lines[accepted], keep, rows, rejects)


def _one_by_one(chunk: Chunk, examples: List[bytes], call):
    """The model refused a chunk: each row alone, so that only the rows it refuses are
    rejected (with its message), as the model server does with a failed batch."""
    import tensorflow as tf
    good, outputs, rejects = [], [], list(chunk.rejects)
    for i, example in enumerate(examples):
        try:
            outputs.append(call([example]))
            good.append(i)
        except tf.errors.InvalidArgumentError as e:
            message = [ln for ln in e.message.splitlines() if ln.strip()
                       and not ln.strip().startswith(('[[', 'Detected at', 'Graph execution',
                                                      '<stack'))]
            rejects.append((int(chunk.lines[i]),
                            'the model refused the row: ' + (message[0] if message else '')))
    kept = Chunk(chunk.file, chunk.index, chunk.lines[good],
                 {k: [v[i] for i in good] for k, v in chunk.keep.items()},
                 chunk.rows.take(pa.array(good, pa.int64())), rejects)
    return kept, ({k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
                  if outputs else {})


class ChunkModelHandler(ModelHandler):
    """Beam's RunInference on chunks: the SavedModel loaded once per worker
    (``tf.saved_model.load``), one signature call per chunk.

    The call: the raw-feature signature (``raw_signature``, ``serving_json``: one tensor per
    feature, the TFT graph and the model) on the chunk's columns, when the model has it with
    the job's features and types; that skips encoding and parsing tf.Examples, about half
    of the work per row (benchmarks/RESULTS.md, "Batch predictions"), for the same
    predictions. Otherwise, and for a chunk that signature refuses or cannot express
    (``to_raw_features``), ``signature`` (``serving_default``) on the chunk as serialized
    tf.Examples, whose refusals and messages are the rejects'.

    Beam's own TensorFlow handler (``TFModelHandlerNumpy``) loads a Keras model with
    ``tf.keras.models.load_model`` and calls it on one stacked array: it cannot call a named
    signature, and its module imports tensorflow_hub, which needs setuptools' pkg_resources
    (not installed). tfx-bsl's ``CreateModelHandler`` calls the signature, but on one element
    per example and one PredictionLog proto per row: 6x slower here
    (benchmarks/predict_bench.py --compare-tfx-bsl).
    """

    def __init__(self, model_path: str, signature: str, features: Dict[str, str],
                 raw_signature: str = ''):
        super().__init__()
        self.model_path, self.signature = model_path, signature
        self.features, self.raw_signature = dict(features), raw_signature

    def load_model(self):
        from components.signatures import load_saved_model
        return load_saved_model(self.model_path)

    def _raw_call(self, model):
        """A call of the raw-feature signature on ``to_raw_features``' arrays, or None when
        the model has no such signature taking exactly the job's features and types, or was
        not exported by this product (``signatures.export_serving_model``, which records its
        trainer): only there are the two signatures one function of the raw features, a
        missing value included (another model's ``serving_default`` may refuse a row with a
        missing feature that its ``serving_json`` scores)."""
        import tensorflow as tf

        from components.features import json_inputs
        from components.signatures import read_trainer
        function = model.signatures.get(self.raw_signature) if self.raw_signature else None
        if function is None or not read_trainer(self.model_path):
            return None
        dtypes = {FLOAT: tf.float32, INT: tf.int64, STRING: tf.string}
        inputs = json_inputs(self.features)  # signature input -> feature
        spec = function.structured_input_signature[1]
        if set(spec) != set(inputs) or any(spec[name].dtype != dtypes[self.features[column]]
                                           for name, column in inputs.items()):
            return None
        return lambda arrays: {k: v.numpy() for k, v in function(**{
            name: tf.constant(arrays[column]) for name, column in inputs.items()}).items()}

    def run_inference(self, batch: Sequence[Chunk], model,
                      inference_args: Optional[Dict[str, Any]] = None
                      ) -> Iterable[PredictionResult]:
        import tensorflow as tf
        function = model.signatures[self.signature]
        [name] = function.structured_input_signature[1]
        def call(examples):
            return {k: v.numpy() for k, v in function(**{name: tf.constant(examples)}).items()}
        raw_call = self._raw_call(model)

        for chunk in batch:
            outputs = None
            if not chunk.rows.num_rows:
                outputs = {}
            elif raw_call is not None:
                arrays = to_raw_features(chunk.rows, self.features)
                try:
                    outputs = None if arrays is None else raw_call(arrays)
                except tf.errors.InvalidArgumentError:
                    outputs = None  # the tf.Example way, for serving_default's own messages
            if outputs is None:
                examples = to_examples(chunk.rows, self.features)
                try:
                    outputs = call(examples)
                except tf.errors.InvalidArgumentError:
                    chunk, outputs = _one_by_one(chunk, examples, call)
            yield PredictionResult(chunk, outputs)

    def batch_elements_kwargs(self) -> Dict[str, int]:  # noqa: D102
        return {'max_batch_size': 1}  # a chunk is already a batch of thousands of rows

    def get_metrics_namespace(self) -> str:
        return 'BatchPredict'


# ------------------------------------------------------------------------------------------
# Writing: a shard per chunk, joined in order after the job.


PREDICTED_CLASS = 'predicted_class'


def prediction_columns(outputs: Dict[str, np.ndarray], fmt: str) -> Dict[str, pa.Array]:
    """The signature's outputs as columns: a scalar output as it is; a vector output (a
    multi-class model's ``probabilities``) as a list column in Parquet, and in CSV as one
    column per class, ``probabilities_<class>``, named by the model's ``classes`` output
    (which is then left out: it is the same in every row). A multi-class model's rows also
    get ``predicted_class``, the class of the highest probability (the first of a tie)."""
    outputs = {k: _text(v) if v.dtype == object else v for k, v in outputs.items()}
    columns: Dict[str, pa.Array] = {}
    classes = outputs.get('classes')
    scores = [v for k, v in outputs.items()
              if k != 'classes' and classes is not None and v.shape == classes.shape]
    if scores:  # the probabilities, one column per class
        best = classes[np.arange(len(classes)), np.argmax(scores[0], axis=1)]
        columns[PREDICTED_CLASS] = pa.array(best)
    for name in sorted(outputs):
        value = outputs[name]
        if value.ndim == 1:
            columns[name] = pa.array(value)
        elif fmt == 'parquet':
            columns[name] = pa.array(list(value))
        elif name == 'classes' and classes is not None:
            continue
        else:
            labels = (list(classes[0]) if classes is not None and classes.shape == value.shape
                      else [str(i) for i in range(value.shape[1])])
            for j, label in enumerate(labels):
                columns[f'{name}_{label}'] = pa.array(value[:, j])
    return columns


def _text(value: np.ndarray) -> np.ndarray:
    """A string output (TensorFlow's bytes) as text: UTF-8, as the vocabulary files hold it."""
    return np.vectorize(lambda b: b.decode('utf-8', 'replace'), otypes=[object])(value)


class WriteShard(beam.DoFn):
    """A chunk's predictions and rejects, each in a shard named by the chunk's place in the
    input and its row count (``<file>-<chunk>.<rows>.out``), for ``join``."""

    def __init__(self, job: Job):
        self.job = job

    def process(self, result: PredictionResult) -> Iterable[None]:
        job, chunk = self.job, result.example
        name = os.path.join(job.parts, f'{chunk.file:06d}-{chunk.index:08d}')
        os.makedirs(job.parts, exist_ok=True)
        if chunk.rows.num_rows:
            columns = {LINE: pa.array(chunk.lines)}
            if job.file_names:
                columns[FILE] = pa.array([job.file_names[chunk.file]] * len(chunk.lines))
            columns.update({k: pa.array(v, pa.string()) for k, v in chunk.keep.items()})
            columns.update(prediction_columns(result.inference, job.format))
            _write(pa.table(columns), f'{name}.{len(chunk.lines)}.out', job.format)
        if chunk.rejects:
            rejects = sorted(chunk.rejects)
            _write(pa.table({
                FILE: pa.array([job.files[chunk.file]] * len(rejects), pa.string()),
                LINE: pa.array([r[0] for r in rejects], pa.int64()),
                'reason': pa.array([r[1] for r in rejects], pa.string())}),
                f'{name}.{len(rejects)}.rejects', 'csv')
        return []


def _write(table: pa.Table, path: str, fmt: str) -> None:
    tmp = path + '.tmp'  # a retried bundle rewrites the shard whole
    if fmt == 'parquet':
        pq.write_table(table, tmp)
    else:
        pa_csv.write_csv(table, tmp)
    os.replace(tmp, path)


def build(pipeline: beam.Pipeline, job: Job):
    return (pipeline
            | 'Files' >> beam.Create(list(range(len(job.files))))
            | 'ReadAndCheck' >> beam.ParDo(ReadAndCheck(job))
            | 'RunInference' >> RunInference(ChunkModelHandler(
                job.model_path, job.signature, job.features, job.raw_signature))
            | 'WriteShard' >> beam.ParDo(WriteShard(job)))


def join(parts: str, suffix: str, target: str, fmt: str, empty_header: Sequence[str]) -> int:
    """The shards ``*.<rows><suffix>`` of ``parts``, in order, as one file at ``target``
    (written beside it, then renamed into place); returns the rows. One shard in memory at a
    time. CSV shards each have the header; it is written once."""
    shards = sorted(f for f in os.listdir(parts) if f.endswith(suffix)) \
        if os.path.isdir(parts) else []
    tmp = f'{target}.tmp-{uuid.uuid4().hex[:8]}'
    rows = 0
    try:
        if fmt == 'parquet':
            writer = None
            for shard in shards:
                table = pq.read_table(os.path.join(parts, shard))
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
            (writer or pq.ParquetWriter(tmp, pa.schema(
                [(c, pa.string()) for c in empty_header]))).close()
        else:
            with open(tmp, 'wb') as out:
                if not shards:
                    out.write((','.join(f'"{c}"' for c in empty_header) + '\n').encode())
                for n, shard in enumerate(shards):
                    with open(os.path.join(parts, shard), 'rb') as f:
                        head = f.readline()
                        if n == 0:
                            out.write(head)
                        shutil.copyfileobj(f, out, 1 << 20)
        rows = sum(int(shard.rsplit('.', 2)[1]) for shard in shards)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return rows


def run(job: Job, beam_args: Sequence[str]) -> Dict[str, Any]:
    """Runs the job and joins its output; returns the counts and the paths written."""
    from apache_beam.options.pipeline_options import PipelineOptions

    shutil.rmtree(job.parts, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(job.output)), exist_ok=True)
    try:
        with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
            build(p, job)
        rows = join(job.parts, '.out', job.output, job.format,
                    [LINE] + ([FILE] if job.file_names else []) + list(job.keep))
        rejected = join(job.parts, '.rejects', job.rejects, 'csv', REJECT_COLUMNS)
    finally:
        shutil.rmtree(job.parts, ignore_errors=True)
    return {'rows': rows, 'rejected': rejected, 'output': job.output, 'rejects': job.rejects,
            'files': len(job.files), 'model': job.model_path}
