"""``pipeline_runner.py predict``: scores CSV files with a pushed model, on Beam.

    python pipeline_runner.py predict --data DIR_OR_CSV --out PATH.csv|PATH.parquet
        [--config configs/taxi.yaml] [--serving-dir DIR] [--model-version V]
        [--keep COL[,COL...]] [--runner RUNNER] [--beam-arg ARG ...] [--beam-workers N]
        [--verbose]

The model is the newest version in the serving directory (the config's ``paths.serving_dir``
unless ``--serving-dir``), or ``--model-version``. The job itself, its output and its rejects
file are ``components/batch_inference.py``'s (shared with the BulkInferrer node). Feature types
come from the schema the config's runs use (``data.schema``, or ``schemas/<name>/schema.pbtxt``
when it is not set: ``pipeline.inputs.schema_in_use``), the contract the model was trained
on; the features are those the model's ``serving_json`` signature takes (else the schema's,
less the label and the excluded columns).

Beam: ``--runner`` names Beam's runner (DirectRunner by default; PortableRunner, FlinkRunner,
SparkRunner, DataflowRunner), and the arguments are the pipeline's: this command's defaults
for the in-process runner, then ``run.beam_args`` of the config, then ``--beam-arg``s, the
later winning for the same flag. ``--beam-workers N`` (default: the config's
``run.beam_workers``) runs the job on N local Beam SDK worker processes of their own, as a
run's Beam jobs (``pipeline/beam_workers.py``); it cannot be combined with ``--runner`` or
the other arguments that say where Beam's workers run. The job reads ``--data`` and the model
and writes ``--out`` on this machine, so workers that run elsewhere (Dataflow, Docker
containers, a remote pool) are refused before the job starts.

Exit status: 0 when the job ran (rejected rows are counted, listed in the rejects file, and do
not fail it), 1 when the data was refused before the job (a file without a column the model
takes) or the job failed, 2 when the command line or the config was refused.
"""
import argparse
import os
import sys
import time
import traceback
from typing import Dict, List, Optional, Sequence, Tuple

from components.csv_format import is_csv_name
from components.model_versions import version_number
from pipeline.config import ConfigError, load_config
from pipeline.inputs import schema_in_use

# As the pipeline's (pipeline/pipeline.py): one in-process worker, cloudpickle.
DEFAULT_BEAM_ARGS = ('--direct_running_mode=in_memory', '--direct_num_workers=1',
                     '--pickle_library=cloudpickle')


OUTPUT_FORMATS = ('.csv', '.parquet')  # components/batch_inference.py writes these


class PredictError(ValueError):
    """The command line cannot be carried out (exit status 2); the message names the flag."""


class DataRefused(ValueError):
    """The input files cannot be scored as they are (exit status 1)."""


def parser(default_config: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='pipeline_runner.py predict',
        description='Score CSV files with a pushed model (Beam RunInference): one output row '
                    'per accepted input row, in the input\'s order; bad rows go to a rejects file.')
    p.add_argument('--config', default=default_config, help='pipeline YAML (default: %(default)s)')
    p.add_argument('--data', required=True, help='a CSV file, or a directory of *.csv files')
    p.add_argument('--out', required=True,
                   help='output file, .csv or .parquet; the rejects go to <out>.rejects.csv')
    p.add_argument('--serving-dir', help='the model base path (default: paths.serving_dir)')
    p.add_argument('--model-version', help='the version to use (default: the newest)')
    p.add_argument('--keep', default='', metavar='COL[,COL...]',
                   help='input columns copied to the output, after line (and file)')
    p.add_argument('--runner', help="Beam's runner, e.g. DirectRunner (default), PortableRunner, "
                                    'FlinkRunner, DataflowRunner')
    p.add_argument('--beam-arg', action='append', default=[], metavar='ARG',
                   help='a Beam pipeline argument, e.g. --beam-arg=--direct_num_workers=2 '
                        '(repeatable; after run.beam_args)')
    p.add_argument('--beam-workers', type=int, metavar='N',
                   help='run the job on N local Beam SDK worker processes of their own '
                        '(default: run.beam_workers of the config; 0: in this process)')
    p.add_argument('--verbose', action='store_true', help="show the libraries' own logs")
    return p


def resolve_model(serving_dir: str, version: Optional[str]) -> Tuple[str, str]:
    """(path, version) of the requested version, or of the newest one."""
    names = os.listdir(serving_dir) if os.path.isdir(serving_dir) else []
    versions = sorted((v for v in map(version_number, names) if v is not None), reverse=True)
    versions = [v for v in versions
                if os.path.isfile(os.path.join(serving_dir, str(v), 'saved_model.pb'))]
    if version is not None:
        if version_number(version) not in versions:
            raise PredictError(f'--model-version: no version {version} in {serving_dir} '
                               f'(versions: {", ".join(map(str, versions)) or "none"})')
        return os.path.join(serving_dir, str(version_number(version))), str(version_number(version))
    if not versions:
        raise PredictError(f'{serving_dir}: no pushed model (no version directory holding a '
                           'saved_model.pb); run the pipeline first, or give --serving-dir')
    return os.path.join(serving_dir, str(versions[0])), str(versions[0])


def input_files(data: str) -> Tuple[List[str], List[str]]:
    """The files to score and the ``file`` column's value of each (none for a single file)."""
    if os.path.isfile(data):
        return [os.path.abspath(data)], []
    if not os.path.isdir(data):
        raise PredictError(f'--data: {data} does not exist')
    names = sorted(n for n in os.listdir(data)
                   if is_csv_name(n) and os.path.isfile(os.path.join(data, n)))
    if not names:
        raise PredictError(f'--data: no CSV files (*.csv, *.csv.gz) in {data}')
    return [os.path.abspath(os.path.join(data, n)) for n in names], names


def model_features(config, schema_path: str, model_path: str) -> Dict[str, str]:
    """{raw feature the model takes: FLOAT, INT or STRING}; the types from the schema at
    ``schema_path``."""
    from tensorflow.core.protobuf import saved_model_pb2

    from components.features import json_inputs
    from components.signatures import SERVING_JSON
    from pipeline.schema import load_schema
    from tensorflow_metadata.proto.v0 import schema_pb2

    from components.batch_inference import FLOAT, INT, STRING
    kinds = {schema_pb2.FLOAT: FLOAT, schema_pb2.INT: INT, schema_pb2.BYTES: STRING}
    schema = {f.name: kinds[f.type] for f in load_schema(schema_path).feature}
    with open(os.path.join(model_path, 'saved_model.pb'), 'rb') as f:
        graph = saved_model_pb2.SavedModel.FromString(f.read()).meta_graphs[0]
    if SERVING_JSON in graph.signature_def:
        dtypes = {1: FLOAT, 9: INT, 7: STRING}  # DT_FLOAT, DT_INT64, DT_STRING
        inputs = graph.signature_def[SERVING_JSON].inputs
        columns = json_inputs(schema)  # input name -> the column it takes
        return {columns.get(name, name): schema.get(columns.get(name, name))
                or dtypes.get(info.dtype, STRING) for name, info in sorted(inputs.items())}
    skip = {config.data.label, *config.data.exclude}
    return {name: kind for name, kind in schema.items() if name not in skip}


def beam_arguments(defaults: Sequence[str], *given: Sequence[str]) -> List[str]:
    """``defaults``, then each list in ``given``; a later flag replaces an earlier one."""
    merged: Dict[str, str] = {}
    for args in (defaults, *given):
        for arg in args:
            merged[arg.split('=', 1)[0]] = arg
    return list(merged.values())


def check_workers(workers: int, given: Sequence[str]) -> int:
    """``workers`` (``--beam-workers``), if the Beam arguments ``given`` leave the job on
    this machine; a PredictError naming the flag otherwise."""
    from pipeline import beam_workers

    if workers < 0:
        raise PredictError(f'--beam-workers: expected 0 or more, got {workers}')
    placement = beam_workers.placement_flags(given)
    if workers and placement:
        raise PredictError(f'--beam-workers (default: run.beam_workers) sends the job to its own '
                           f'worker pool; it cannot be combined with {", ".join(placement)} '
                           '(leave one of them out, or give --beam-workers 0)')
    if beam_workers.unsupported_runner(given):
        raise PredictError(beam_workers.unsupported_runner(given))
    remote = beam_workers.remote_workers(given)
    if remote:
        raise PredictError(f'the Beam arguments run Beam\'s workers {remote}, but the job reads '
                           '--data and the model and writes --out on this machine, where they '
                           'cannot; run it here (the default runner, --beam-workers N, or the '
                           'portable runner with --environment_type=LOOPBACK)')
    return workers


def main(argv: List[str], default_config: str, out=None) -> int:
    out = out or sys.stdout
    args = parser(default_config).parse_args(argv)
    try:
        config = load_config(args.config, check_data=False)
        if os.path.splitext(args.out)[1].lower() not in OUTPUT_FORMATS:
            raise PredictError(f'--out: {args.out}: expected a file name ending in .csv or '
                               '.parquet')
        model_path, version = resolve_model(
            os.path.abspath(args.serving_dir or config.paths.serving_dir), args.model_version)
        files, names = input_files(args.data)
        schema_path = schema_in_use(config)
    except (ConfigError, PredictError) as e:
        print(f'Predict refused: {e}', file=sys.stderr)
        return 2
    keep = tuple(c.strip() for c in args.keep.split(',') if c.strip())
    if set(keep) & {'line', 'file'}:
        print('Predict refused: --keep: "line" and "file" are columns the output adds itself',
              file=sys.stderr)
        return 2
    given = [*config.run.beam_args, *([f'--runner={args.runner}'] if args.runner else []),
             *args.beam_arg]
    beam_args = beam_arguments(DEFAULT_BEAM_ARGS, given)
    try:
        workers = check_workers(config.run.beam_workers if args.beam_workers is None
                                else args.beam_workers, given)
    except PredictError as e:
        print(f'Predict refused: {e}', file=sys.stderr)
        return 2
    runner = next((a.split('=', 1)[1] for a in beam_args if a.startswith('--runner=')),
                  'DirectRunner')
    where = (f'{workers} Beam worker process{"es" * (workers > 1)} (PortableRunner)' if workers
             else runner)
    print(f'Scoring {args.data} ({len(files)} file{"s" * (len(files) != 1)}) with {config.name} '
          f'version {version} ({model_path}) on {where}', file=out, flush=True)
    from pipeline.beam_workers import beam_args as pool_args, worker_pool
    from pipeline.run import configure_logging, quiet_output
    stamp = time.strftime('%Y%m%d-%H%M%S')
    log_path = os.path.join(config.paths.pipeline_root, '_logs', f'predict-{stamp}.log')
    configure_logging(args.verbose)
    start = time.time()
    try:
        import contextlib
        with (contextlib.nullcontext() if args.verbose else quiet_output(log_path)):
            from components import batch_inference  # Beam, TensorFlow: behind the log
            features = model_features(config, schema_path, model_path)
            data = config.data
            job = batch_inference.Job(model_path=model_path, files=tuple(files),
                                      file_names=tuple(names), features=features,
                                      output=os.path.abspath(args.out), keep=keep,
                                      delimiter=data.delimiter, encoding=data.encoding,
                                      na_values=tuple(data.na_values))
            try:
                batch_inference.check_inputs(job)
            except batch_inference.InputError as e:
                raise DataRefused(str(e)) from None
            with worker_pool(workers) as pool:  # None when workers is 0
                result = batch_inference.run(
                    job, beam_arguments(beam_args, pool_args(pool)) if pool else beam_args)
    except DataRefused as e:
        print(f'Data refused: {e}', file=sys.stderr)
        return 1
    except PredictError as e:
        print(f'Predict refused: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM while on the workers (beam_workers)
        print(f'Predict interrupted: {args.out} is as it was', file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a failed job is reported, with the log
        print(f'Predict failed: {type(e).__name__}: {e}', file=sys.stderr)
        if not args.verbose:
            with open(log_path, 'a', encoding='utf-8') as log:  # the traceback, for the log
                traceback.print_exc(file=log)
            print(f'Full log: {log_path}', file=sys.stderr)
        return 1
    seconds = time.time() - start
    print(render(result, seconds), file=out, flush=True)
    return 0


def render(result, seconds: float) -> str:
    rate = result['rows'] / seconds if seconds > 0 else 0.0

    def rows(n):
        return f'{n:,} row{"" if n == 1 else "s"}'

    speed = f'{rate:,.0f}' if rate >= 10 else f'{rate:.2g}'
    lines = [f'Scored {rows(result["rows"])} in {seconds:.1f}s ({speed} rows/s): '
             f'{result["output"]}']
    if result['rejected']:
        lines.append(f'Rejected {rows(result["rejected"])} (file, line and reason in '
                     f'{result["rejects"]})')
    else:
        lines.append(f'Rejected no rows ({result["rejects"]} lists none)')
    return '\n'.join(lines)
