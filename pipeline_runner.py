"""Command line: run the pipeline, serve the pushed model, or draft a schema.

    python pipeline_runner.py [run] [--config configs/taxi.yaml] [flags]
    python pipeline_runner.py serve [--config configs/taxi.yaml] [server flags]
    python pipeline_runner.py draft-schema [--config ...] [--out PATH]
    python pipeline_runner.py report [RUN] [--config ...] [--out PATH]
    python pipeline_runner.py runs [show RUN | diff A B] [--config ...]
    python pipeline_runner.py predict --data DIR_OR_CSV --out PATH [--model-version V] [...]

Exit status (one refusal policy, README "What a run shows"): 0 when the run succeeded
(blessed and pushed, or not blessed and nothing pushed); 1 when the data was refused or the
run failed (the reason is printed, with the log's path); 2 when the command line or the
config was refused, naming the key: every such refusal comes before TensorFlow is imported
(config.validate, then pipeline.inputs.resolve), and nothing has run. No mistake of the
user's ends in a traceback; ``--verbose`` shows one for an unexpected failure.
"""
import argparse
import dataclasses
import json
import logging
import os
import sys
from typing import Callable, Dict, List, Optional

from pipeline.config import TRAINERS, ConfigError, load_config

REPO = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(REPO, 'configs', 'taxi.yaml')


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='pipeline_runner.py',
        description='Run the pipeline: CSV -> validation -> Transform -> Trainer -> '
                    'Evaluator -> Pusher. Flags override the YAML config.')
    p.add_argument('--config', default=DEFAULT_CONFIG, help='pipeline YAML (default: %(default)s)')
    p.add_argument('--data-root', help='directory of CSV files (data.root)')
    p.add_argument('--pipeline-root', help='where artifacts go (paths.pipeline_root)')
    p.add_argument('--metadata', help='ML Metadata SQLite file (paths.metadata)')
    p.add_argument('--serving-dir', help='where blessed models are pushed (paths.serving_dir)')
    p.add_argument('--runner', choices=['local', 'beam', 'kubeflow'],
                   help='orchestrator (run.runner); kubeflow writes a KFP v2 / Vertex AI '
                        'pipeline spec instead of running (docs/orchestrators.md)')
    p.add_argument('--image', help='kubeflow: the container image built from the Dockerfile '
                                   '(run.image)')
    p.add_argument('--kfp-output', help='kubeflow: where the spec goes, .json (PipelineJob, '
                                        'Vertex AI) or .yaml (PipelineSpec, KFP) (run.kfp_output)')
    p.add_argument('--trainer', choices=list(TRAINERS), help='training.trainer')
    p.add_argument('--train-steps', type=int, help='training.train_steps')
    p.add_argument('--beam-arg', action='append', default=[], metavar='ARG',
                   help='a Beam pipeline argument, e.g. --beam-arg=--direct_num_workers=2 '
                        '(repeatable; added to run.beam_args)')
    p.add_argument('--beam-workers', type=int, metavar='N',
                   help='run every Beam job on N local Beam SDK worker processes of their own, '
                        'through the portable runner (run.beam_workers; 0: in this process)')
    p.add_argument('--allow-anomalies', action='store_true',
                   help='go on when the data has anomalies (validation.on_anomalies=warn)')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='override any config key, e.g. --set training.batch_size=256 (repeatable)')
    p.add_argument('--summary-json', metavar='PATH', help='also write the summary as JSON here')
    p.add_argument('--verbose', action='store_true', help='show the libraries\' own logs')
    return p


def overrides_from_args(args: argparse.Namespace) -> List[str]:
    flags = {'data.root': args.data_root, 'paths.pipeline_root': args.pipeline_root,
             'paths.metadata': args.metadata, 'paths.serving_dir': args.serving_dir,
             'run.runner': args.runner, 'training.trainer': args.trainer,
             'training.train_steps': args.train_steps, 'run.image': args.image,
             'run.kfp_output': args.kfp_output, 'run.beam_workers': args.beam_workers}
    out = [f'{k}={v}' for k, v in flags.items() if v is not None]
    out += list(args.set)
    if args.allow_anomalies:
        out.append('validation.on_anomalies=warn')
    if args.verbose:
        out.append('run.verbose=true')
    return out


def load(args: argparse.Namespace):
    from pipeline.config import validate

    config = load_config(args.config, overrides_from_args(args))
    if args.beam_arg:
        config = config.replace(run=dataclasses.replace(
            config.run, beam_args=tuple(config.run.beam_args) + tuple(args.beam_arg)))
        validate(config, check_data=False, source=args.config)  # what the Beam arguments imply
    return config


def refused(e: Exception) -> int:
    print(f'Config refused: {e}', file=sys.stderr, flush=True)
    return 2


def data_refused(e: Exception) -> int:
    print(f'Data refused: {e}', file=sys.stderr, flush=True)
    return 1


def cmd_run(argv: List[str]) -> int:
    args = run_parser().parse_args(argv)
    from pipeline.inputs import resolve
    from pipeline.preflight import DataError
    try:
        config = load(args)
    except ConfigError as e:
        return refused(e)
    try:
        # Everything the config check could not see without the data and the schema, still
        # before TensorFlow loads (unless a schema is drafted).
        inputs = resolve(config, log=lambda line: print(line, flush=True))
    except ConfigError as e:
        return refused(f'{args.config}: {e}')
    except DataError as e:
        return data_refused(e)
    if config.run.runner == 'kubeflow':
        from pipeline.orchestrators.kubeflow import compile_pipeline
        try:
            print(f'Wrote the Kubeflow pipeline spec {compile_pipeline(config)} '
                  f'(image {config.run.image})')
        except ConfigError as e:
            return refused(e)
        return 0
    from pipeline.run import run_pipeline

    workers = config.run.beam_workers
    print(f'Running pipeline {config.name!r} on {config.data.root} '
          f'({config.run.runner} runner, {config.training.trainer} trainer'
          f'{f", Beam jobs on {workers} worker process" + "es" * (workers > 1) if workers else ""})',
          flush=True)
    try:
        summary = run_pipeline(config, inputs=inputs)
    except ConfigError as e:  # resolved again after waiting for another run
        return refused(f'{args.config}: {e}')
    except DataError as e:
        return data_refused(e)
    except KeyboardInterrupt:
        print('Interrupted: nothing was pushed by this run.', file=sys.stderr, flush=True)
        return 130
    except Exception as e:  # noqa: BLE001 - a failure is reported, not a traceback
        logging.getLogger(__name__).debug('run failed', exc_info=True)
        if config.run.verbose:
            raise
        print(f'Run failed: {type(e).__name__}: {e}\n(run with --verbose for the traceback)',
              file=sys.stderr, flush=True)
        return 1
    from pipeline.report import render  # imported by the run already, behind the log
    print(render(summary), flush=True)
    if summary.get('log'):
        print(f'Full log: {summary["log"]}')
    if args.summary_json:
        os.makedirs(os.path.dirname(os.path.abspath(args.summary_json)), exist_ok=True)
        with open(args.summary_json, 'w', encoding='utf-8') as f:
            json.dump(summary, f, indent=2, default=str)
    return 1 if summary['status'] == 'failed' else 0


def cmd_serve(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog='pipeline_runner.py serve', add_help=False)
    p.add_argument('--config', default=DEFAULT_CONFIG)
    known, rest = p.parse_known_args(argv)
    try:
        config = load_config(known.config, check_data=False)
    except ConfigError as e:
        return refused(e)
    from serving import quiet_tensorflow
    quiet_tensorflow()
    from serving.server import main as serve_main
    defaults = ['--serving-dir', config.paths.serving_dir, '--model-name', config.name]
    return serve_main(defaults + rest) or 0


def cmd_draft_schema(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog='pipeline_runner.py draft-schema',
                                description='Infer a schema from the data (TFDV), with the '
                                            'TRAINING/SERVING environments set, for review.')
    p.add_argument('--config', default=DEFAULT_CONFIG)
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='override a config key, e.g. --set data.root=DIR (repeatable)')
    p.add_argument('--out', help='where to write it (default: print it)')
    args = p.parse_args(argv)
    try:
        config = load_config(args.config, args.set)
    except ConfigError as e:
        return refused(e)
    from google.protobuf import text_format

    from pipeline import inputs
    from pipeline.preflight import DataError
    from pipeline.schema import describe_schema, write_schema
    # The schema text alone on stdout when it is printed, so that it can be redirected.
    notes = sys.stdout if args.out else sys.stderr
    try:
        window, drift_span = inputs.read_spans(config)
        fmt = inputs.reading_format(config)
        files = inputs.fingerprint(inputs.files_to_read(config, window[-1:], None))
        print(f'Reading {len(files)} CSV file{"s" if len(files) != 1 else ""}: '
              f'{fmt.describe()}', file=notes)
        pattern, schema = inputs.draft(config, files, fmt)  # the newest span's files
    except DataError as e:
        return data_refused(e)
    print(f'Drafted a schema from {pattern} (TFDV inference):', file=notes)
    print('\n'.join(describe_schema(schema)), file=notes)
    if args.out:
        write_schema(schema, args.out)
        curated = config.data.schema if config.data.schema not in ('', inputs.DRAFT) \
            else inputs.default_schema_path(config)
        print(f'Wrote {args.out}; compare: diff {curated} {args.out}')
    else:
        print(text_format.MessageToString(schema))
    return 0


RUN_HELP = 'a run id as `runs` lists it, a unique prefix of it, latest or latest~N'


def reading_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The flags that say where a pipeline's runs are, as the run took them."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument('--config', default=DEFAULT_CONFIG, help='pipeline YAML (default: %(default)s)')
    p.add_argument('--pipeline-root', help='where the artifacts are (paths.pipeline_root)')
    p.add_argument('--metadata', help='the ML Metadata SQLite file (paths.metadata)')
    return p


def load_for_reading(args: argparse.Namespace):
    overrides = [f'{key}={value}' for key, value in (('paths.pipeline_root', args.pipeline_root),
                                                     ('paths.metadata', args.metadata)) if value]
    return load_config(args.config, overrides, check_data=False)


def cmd_report(argv: List[str]) -> int:
    p = reading_parser('pipeline_runner.py report', 'Write the HTML report of a recorded run again.')
    p.add_argument('run', nargs='?', default='latest', help=f'{RUN_HELP} (default: latest)')
    p.add_argument('--out', help='where to write it (default: <pipeline_root>/_runs/<run>.html)')
    p.add_argument('--verbose', action='store_true', help='show the libraries\' own logs')
    args = p.parse_args(argv)
    try:
        config = load_for_reading(args)
    except ConfigError as e:
        return refused(e)
    import contextlib
    import time

    from pipeline import run_record
    from pipeline.metadata import RunNotFound, find_run, open_store
    from pipeline.run import configure_logging, quiet_output
    if not os.path.exists(config.paths.metadata):
        print(f'No runs: {config.paths.metadata} does not exist yet', file=sys.stderr)
        return 1
    store = open_store(config.paths.metadata, read_only=True)
    try:
        run = find_run(store, config.name, args.run)
    except RunNotFound as e:
        print(f'Run not found: {e}', file=sys.stderr)
        return 1
    out = os.path.abspath(args.out or run_record.path_for(config.paths.pipeline_root, run.name, '.html'))
    log_path = os.path.join(config.paths.pipeline_root, '_logs',
                            f'report-{time.strftime("%Y%m%d-%H%M%S")}.log')
    print(f'Writing the report of run {run.name} ...', flush=True)
    configure_logging(args.verbose)
    start = time.time()
    try:
        with contextlib.nullcontext() if args.verbose else quiet_output(log_path):
            from pipeline.html_report import write_report
            try:
                size = write_report(config, store, run,
                                    run_record.read(config.paths.pipeline_root, run.name), out)
            except Exception:  # noqa: BLE001 - reported below, traceback in the log
                logging.getLogger(__name__).exception('The report could not be written')
                raise
    except Exception as e:  # noqa: BLE001
        print(f'Report failed: {type(e).__name__}: {e}'
              + ('' if args.verbose else f' (full log: {log_path})'), file=sys.stderr)
        return 1
    if not args.verbose and os.path.exists(log_path):
        os.remove(log_path)
    print(f'Report: {out} ({size / 2**20:.1f} MB, {time.time() - start:.1f}s)')
    return 0


def cmd_runs(argv: List[str]) -> int:
    p = reading_parser('pipeline_runner.py runs',
                       f'The runs ML Metadata recorded: list them, show one, or compare two. '
                       f'RUN, A, B: {RUN_HELP}.')
    p.add_argument('action', nargs='?', default='list', choices=['list', 'show', 'diff'],
                   help='list (default), show RUN, or diff A B')
    p.add_argument('runs', nargs='*', metavar='RUN')
    args = p.parse_args(argv)
    wanted = {'list': 0, 'show': 1, 'diff': 2}[args.action]
    if len(args.runs) != wanted:
        p.error(f'{args.action} takes {wanted} run id{"s" if wanted != 1 else ""}, '
                f'got {len(args.runs)}')
    try:
        config = load_for_reading(args)
    except ConfigError as e:
        return refused(e)
    from pipeline import runs
    from pipeline.metadata import RunNotFound
    if args.action != 'list' and not os.path.exists(config.paths.metadata):
        print(f'No runs: {config.paths.metadata} does not exist yet', file=sys.stderr)
        return 1
    try:
        print({'list': lambda: runs.list_runs(config), 'show': lambda: runs.show(config, *args.runs),
               'diff': lambda: runs.diff(config, *args.runs)}[args.action]())
    except RunNotFound as e:
        print(f'Run not found: {e}', file=sys.stderr)
        return 1
    return 0


def cmd_predict(argv: List[str]) -> int:
    from pipeline.predict import main as predict_main
    return predict_main(argv, DEFAULT_CONFIG)


# The subcommands: name -> function of the remaining arguments, returning the exit status.
COMMANDS: Dict[str, Callable[[List[str]], int]] = {
    'run': cmd_run, 'serve': cmd_serve, 'draft-schema': cmd_draft_schema,
    'report': cmd_report, 'runs': cmd_runs, 'predict': cmd_predict}


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    return cmd_run(argv)


if __name__ == '__main__':
    code = main()
    # Skip the interpreter's teardown: after a run, TensorFlow's and gRPC's C++ destructors
    # take ~2 s and do nothing a finished command needs (everything is written and closed;
    # an exception still exits the normal way).
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
