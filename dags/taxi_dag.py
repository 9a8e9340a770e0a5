"""The taxi pipeline as an Airflow 2 DAG (DAG id ``taxi``), for Airflow's DAG folder.

Like the command line, it is an entry point: it reads the config file and the overrides
from its environment, since Airflow passes a DAG file no arguments:
  PIPELINE_CONFIG  the YAML file (default: configs/taxi.yaml of this repository)
  PIPELINE_SET     overrides as for --set, space-separated, shell-quoted:
                   "paths.pipeline_root=/data/taxi training.train_steps=500"
Parsing it reads the config and nothing else (no data, no TensorFlow): the DAG's two tasks
resolve the run's inputs and run it (pipeline/orchestrators/airflow.py). The schedule is
the config's run.schedule. Set up and try it: see docs/orchestrators.md.
"""
import os
import shlex
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # the DAG folder is not the repository
    sys.path.insert(0, REPO)

from pipeline.orchestrators.airflow import create_dag  # noqa: E402

# Airflow finds DAGs among a module's globals.
dag = create_dag(os.environ.get('PIPELINE_CONFIG', os.path.join(REPO, 'configs', 'taxi.yaml')),
                 shlex.split(os.environ.get('PIPELINE_SET', '')))
