"""Airflow 2: the graph as a DAG, one Airflow task per component (TFX's AirflowDagRunner).

All components but InferredSchemaGen (see ``create_dag``).

The DAG id is the pipeline name; the schedule is ``run.schedule`` (empty: triggered by hand
only). ``catchup`` is off, so a paused or new DAG does not replay every missed interval, and
``max_active_runs`` is 1, so Airflow itself never starts a run while the last one is going
(runs started outside Airflow on the same metadata store are not seen by it; see
``pipeline.lock`` for the command line's runs). Airflow's own metadata (its DB) is separate
from the pipeline's ML Metadata store, which stays ``paths.metadata``.

Each task runs its component in the worker, with the config's Beam arguments, so the
project and TFX must be importable there: ``scripts/airflow.sh`` makes such an environment.
"""
import datetime

from pipeline.config import PipelineConfig

# A fixed date in the past: with catchup off, the first scheduled run is the latest interval.
START_DATE = datetime.datetime(2024, 1, 1)
INFERRED_SCHEMA = 'InferredSchemaGen'


def dag_args(config: PipelineConfig) -> dict:
    return dict(schedule=config.run.schedule or None, start_date=START_DATE, catchup=False,
                max_active_runs=1, tags=['tfx', config.name],
                description=f'TFX pipeline {config.name} on {config.data.root}')


def create_dag(config: PipelineConfig):
    """The Airflow DAG of ``create_pipeline(config)``."""
    from tfx.orchestration.airflow.airflow_dag_runner import (AirflowDagRunner,
                                                              AirflowPipelineConfig)

    from pipeline.pipeline import create_pipeline

    tfx_pipeline = create_pipeline(config)
    # TFX's Airflow launcher (the legacy one) names each output artifact
    # '<output key>:<run id>', unique per type in MLMD; InferredSchemaGen's 'schema' then
    # collides with ImportSchemaGen's and fails. Nothing depends on the inferred schema (it is
    # kept for comparison only), so the Airflow DAG leaves it out.
    tfx_pipeline.components = [c for c in tfx_pipeline.components if c.id != INFERRED_SCHEMA]
    runner = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=dag_args(config)))
    return runner.run(tfx_pipeline)
