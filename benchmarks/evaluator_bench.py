"""The Evaluator alone: TFX's executor (TFMA with Beam) against FastEvaluator's (in memory),
alternating, in one process, on the same examples and models; prints wall and CPU seconds,
the ratios, and the largest difference between the two executors' metric values.

    PYTHONPATH=. .venv/bin/python benchmarks/evaluator_bench.py EXAMPLES_URI MODEL_URI \\
        [--baseline MODEL_URI] [--order tfx,fast,tfx,fast] [--work DIR]

``tfx@N`` in ``--order`` is TFX's executor with its Beam job on N worker processes of
their own (``run.beam_workers: N``, ``pipeline/beam_workers.py``; the pool is started before
the clock starts, as a run starts it once): TFMA under Beam in-process against on workers,
like for like.

EXAMPLES_URI is an ExampleGen artifact (``.../CsvExampleGen/examples/<id>``, its ``eval``
split is evaluated), MODEL_URI a Trainer's model artifact (``.../Trainer/model/<id>``); the
eval config is the taxi config's (``configs/taxi.yaml``, or ``--config``). FastEvaluator's
row limit is lifted, so that both paths are measured at any size. CPU time
(``time.process_time``) is this process's, which the in-memory Beam runner shares, plus
the harnesses' for ``tfx@N``: it is steadier than wall time on a loaded machine.
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

from google.protobuf import json_format
import tensorflow_model_analysis as tfma
from tfx.components.evaluator import executor as tfx_executor
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as specs

from components.fast_evaluator import executor as fast_executor
from pipeline import beam_workers
from pipeline.config import load_config
from pipeline.evaluation import build_eval_config
from pipeline.inputs import resolve
from pipeline.pipeline import beam_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXECUTORS = {'tfx': tfx_executor.Executor, 'fast': fast_executor.Executor}


def artifact(cls, uri, artifact_id):
    a = cls()
    a.uri, a.id = uri, artifact_id
    return a


def run(kind, examples_uri, model_uri, baseline_uri, eval_config, config, out):
    kind, _, workers = kind.partition('@')
    with beam_workers.worker_pool(int(workers or 0)) as pool:
        return evaluate(kind, pool, examples_uri, model_uri, baseline_uri, eval_config,
                        config, out)


def harness_cpu(pool) -> float:
    return pool.harness_cpu() if pool else 0.0


def evaluate(kind, pool, examples_uri, model_uri, baseline_uri, eval_config, config, out):
    shutil.rmtree(out, ignore_errors=True)
    examples = artifact(standard_artifacts.Examples, examples_uri, 1)
    examples.split_names = artifact_utils.encode_split_names(['train', 'eval'])
    inputs = {specs.EXAMPLES_KEY: [examples],
              specs.MODEL_KEY: [artifact(standard_artifacts.Model, model_uri, 2)]}
    if baseline_uri:
        inputs[specs.BASELINE_MODEL_KEY] = [artifact(standard_artifacts.Model, baseline_uri, 3)]
    outputs = {specs.EVALUATION_KEY: [artifact(standard_artifacts.ModelEvaluation,
                                               os.path.join(out, 'evaluation'), 4)],
               specs.BLESSING_KEY: [artifact(standard_artifacts.ModelBlessing,
                                             os.path.join(out, 'blessing'), 5)]}
    for a in outputs.values():
        os.makedirs(a[0].uri)
    args = beam_args(config) + (beam_workers.beam_args(pool) if pool else [])
    executor = EXECUTORS[kind](base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=args, tmp_dir=os.path.join(out, 'tmp'), unique_id='1'))
    start, cpu, harnesses = time.time(), time.process_time(), harness_cpu(pool)
    executor.Do(inputs, outputs, {specs.EVAL_CONFIG_KEY: json_format.MessageToJson(eval_config),
                                  specs.EXAMPLE_SPLITS_KEY: json.dumps(['eval'])})
    wall, cpu = time.time() - start, time.process_time() - cpu
    harnesses = harness_cpu(pool) - harnesses
    return wall, cpu + harnesses, harnesses, outputs[specs.EVALUATION_KEY][0].uri


def values(uri):
    """{(slice, metric key): value} of the double-valued metrics."""
    result = {}
    for m in tfma.load_metrics(uri):
        for kv in m.metric_keys_and_values:
            if kv.value.HasField('double_value'):
                result[(str(m.slice_key), str(kv.key))] = kv.value.double_value.value
    return result


def largest_difference(a, b):
    assert a.keys() == b.keys(), set(a) ^ set(b)
    worst = 0.0
    for k in a:
        if not (math.isnan(a[k]) and math.isnan(b[k])):
            worst = max(worst, abs(a[k] - b[k]) / max(abs(a[k]), abs(b[k]), 1e-12))
    return worst


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('examples')
    p.add_argument('model')
    p.add_argument('--baseline', default='')
    p.add_argument('--config', default=os.path.join(REPO, 'configs', 'taxi.yaml'))
    p.add_argument('--order', default='tfx,fast,tfx,fast')
    p.add_argument('--work', default='')
    args = p.parse_args()
    config = load_config(args.config)
    eval_config = build_eval_config(config, resolve(config).plan)
    fast_executor.MAX_ROWS = sys.maxsize
    work = args.work or tempfile.mkdtemp(prefix='evaluator_bench-')
    times = {}
    last = {}
    for i, kind in enumerate(args.order.split(',')):
        wall, cpu, harnesses, uri = run(kind, args.examples, args.model, args.baseline,
                                        eval_config, config, os.path.join(work, f'{i}-{kind}'))
        times.setdefault(kind, []).append((wall, cpu))
        last[kind] = uri
        print(f'{kind}: {wall:.1f} s wall, {cpu:.1f} s CPU ({harnesses:.1f} of it in the worker '
              f'processes; load {os.getloadavg()[0]:.1f})', flush=True)

    def median(kind, col):
        return sorted(t[col] for t in times[kind])[len(times[kind]) // 2]

    for kind in times:
        if kind != 'tfx' and 'tfx' in times:
            for name, col in (('wall', 0), ('CPU', 1)):
                print(f'median {name}: {kind} {median(kind, col):.1f} s / tfx '
                      f'{median("tfx", col):.1f} s = {median(kind, col) / median("tfx", col):.3f}')
            print(f'largest relative difference between the metric values of {kind} and tfx: '
                  f'{largest_difference(values(last[kind]), values(last["tfx"])):.2g}')


if __name__ == '__main__':
    main()
