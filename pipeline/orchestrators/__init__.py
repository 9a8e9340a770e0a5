"""Thin runners over ``create_pipeline(config, inputs)`` for orchestrators other than this machine's.

``kubeflow``: compiles a Kubeflow Pipelines v2 / Vertex AI pipeline spec.
``airflow``:  an Airflow 2 DAG, resolve_inputs >> run (loaded by ``dags/taxi_dag.py``).
The local and Beam runners are in ``pipeline.run``. See docs/orchestrators.md.
"""
