"""Airflow 2: the pipeline as a DAG of two tasks, ``resolve_inputs >> run``.

``resolve_inputs`` loads the config, resolves the run's inputs once (``pipeline/inputs.py``:
the spans, the files and their fingerprints, the schema, the feature plan, the code's
digests) and checks the data (the preflight). A config or data mistake fails this task with
the same message the command line prints. Its return value, the inputs as JSON, is the task's
XCom: every DAG run records what it ran on, where Airflow's UI shows it.

``run`` runs the graph built from those inputs with TFX's local orchestrator in the worker
(``pipeline.run.run_pipeline``, as the command line does: the run lock, the fast rerun, one
line per component and the summary in the task log, the libraries' output in the run log
under the pipeline root), and fails when the run fails. A retry of ``run`` (or a later DAG
run) reuses every component that completed, from TFX's cache.

Why not one Airflow task per component, as TFX's ``AirflowDagRunner`` makes:
  * the graph depends on the data (the nodes of the span window, DriftCheck when there is a
    previous span): Airflow fixes a DAG's tasks when it parses the file, again and again,
    and parsing must read nothing but the config (``create_dag`` loads it with
    ``check_data=False`` and imports neither TensorFlow nor TFX);
  * one resolution per DAG run means every step of it runs on the same inputs, which the
    parse of a DAG file can not promise (the tasks of one run may run after different
    parses);
  * TFX 1.15's Airflow launcher is the legacy one: it could not retry a task (MLMD
    ``AlreadyExistsError`` for the run's context), and named output artifacts so that
    InferredSchemaGen's schema collided with ImportSchemaGen's.
The price: Airflow's grid shows two tasks, not eleven; the components' own states are in
ML Metadata and in the ``run`` task's log, one line each.

The DAG id is the pipeline name; the schedule is ``run.schedule`` (empty: triggered by hand
only). ``catchup`` is off, so a paused or new DAG does not replay every missed interval, and
``max_active_runs`` is 1, so Airflow itself never starts a run while the last one is going
(runs started outside Airflow on the same metadata store wait for each other: ``run`` takes
``pipeline.lock``'s run lock). Airflow's own metadata (its DB) is separate from the
pipeline's ML Metadata store, which stays ``paths.metadata``.

The project and TFX must be importable in the workers: ``scripts/airflow.sh`` makes such an
environment.
"""
import datetime
import sys
from typing import Any, Dict, List

from pipeline.config import PipelineConfig, load_config

# A fixed date in the past: with catchup off, the first scheduled run is the latest interval.
START_DATE = datetime.datetime(2024, 1, 1)
RESOLVE, RUN = 'resolve_inputs', 'run'


def dag_args(config: PipelineConfig) -> dict:
    return dict(schedule=config.run.schedule or None, start_date=START_DATE, catchup=False,
                max_active_runs=1, tags=['tfx', config.name],
                description=f'TFX pipeline {config.name} on {config.data.root}')


def resolve_inputs(config_path: str, overrides: List[str]) -> Dict[str, Any]:
    """Task 1: the inputs of this DAG run, checked (raises with the reason when refused)."""
    from pipeline.inputs import resolve
    from pipeline.preflight import preflight

    config = load_config(config_path, overrides)
    inputs = resolve(config)
    preflight(config, inputs)
    print(f'{config.name}: spans {list(inputs.spans) or "(flat root)"}, '
          f'{len(inputs.files)} files, ~{inputs.rows} rows, schema {inputs.schema.path}')
    return inputs.to_dict()


def run(config_path: str, overrides: List[str], **context) -> None:
    """Task 2: the pipeline on task 1's inputs; raises when the run fails."""
    from pipeline.inputs import RunInputs
    from pipeline.report import render
    from pipeline.run import run_pipeline

    config = load_config(config_path, overrides)
    inputs = RunInputs.from_dict(context['ti'].xcom_pull(task_ids=RESOLVE))
    summary = run_pipeline(config, out=sys.stdout, inputs=inputs)
    print(render(summary))
    if summary['status'] == 'failed':
        raise RuntimeError(f'{config.name}: {summary["error"]}'
                           + (f' (log: {summary["log"]})' if summary.get('log') else ''))


def create_dag(config_path: str, overrides: List[str] = ()):
    """The DAG of the config at ``config_path`` with ``overrides`` (``--set`` style).

    Reads the config file and nothing else: the data is read by the tasks, when they run.
    """
    from airflow import DAG
    from airflow.operators.python import PythonOperator

    overrides = list(overrides)
    config = load_config(config_path, overrides, check_data=False)
    args = {'config_path': config_path, 'overrides': overrides}
    with DAG(dag_id=config.name, **dag_args(config)) as dag:
        first = PythonOperator(task_id=RESOLVE, python_callable=resolve_inputs, op_kwargs=args)
        second = PythonOperator(task_id=RUN, python_callable=run, op_kwargs=args)
        first >> second
    return dag
