"""Gradient-boosted-trees trainer module (``training.trainer: gbt``): TensorFlow Decision
Forests' ``GradientBoostedTreesModel``, on the same features as the Keras model.

What it is fed, and why: the transformed features of the same TFT graph (the plan's
outputs), not the raw columns. Trees are indifferent to the z-scores and the log scaling
(monotonic: the same splits), and through the graph they get the same parsing, NA tokens,
missing-value fill, vocabularies (category ids, with the out-of-vocabulary buckets at
serving), date parts and dropped columns as the Keras model. So the two trainers differ only
in the model, and the export is the same: ``components.signatures.export_serving_model``
wraps the trees with the TFT graph in the three signatures and the same output keys, and the
Evaluator gates either against the other. Float features are NUMERICAL, integer ids
CATEGORICAL (TF-DF's dense integer categories).

Training: one pass over the train split (``train_steps`` does not apply; the data are read
into memory, as TF-DF does), the eval batches of the Keras trainer (``eval_steps`` of them)
as the validation set for early stopping, at most ``gbt_num_trees`` trees of depth
``gbt_max_depth`` with at least ``gbt_min_examples`` rows a leaf, seeded with ``seed``,
TF-DF's other defaults (shrinkage 0.1...) or the predefined set ``gbt_template`` names
(what it does not set). The label is on its own scale (trees need no standardization)
and unweighted: the plan's class weights are the Keras trainer's.

Loading the exported model needs TF-DF's custom ops: ``import tensorflow_decision_forests``
before ``tf.saved_model.load``. TFMA and TFT do that themselves when the package is
installed, and the project's server does it (``serving/model.py``).
"""
import tensorflow as tf
import tensorflow_decision_forests as tfdf
import tensorflow_transform as tft

from components.features import json_input_name
from components.signatures import export_serving_model, transform_function
from components.trainer import make_dataset, parse_custom_config, validation_dataset

TRAINER_NAME = 'gbt'
TASKS = {'binary': tfdf.keras.Task.CLASSIFICATION, 'multiclass': tfdf.keras.Task.CLASSIFICATION,
         'regression': tfdf.keras.Task.REGRESSION}


def model_inputs(plan, tft_output):
    """The transformed features the trees take: every output of the TFT graph but the label
    (the plan's, and any a custom preprocessing_fn adds), with TF-DF's semantic."""
    spec = tft_output.transformed_feature_spec()
    return {name: (tfdf.keras.FeatureSemantic.NUMERICAL if s.dtype == tf.float32
                   else tfdf.keras.FeatureSemantic.CATEGORICAL)
            for name, s in sorted(spec.items()) if name != plan.label_xf}


def build_gbt_model(plan, inputs, training) -> tfdf.keras.GradientBoostedTreesModel:
    return tfdf.keras.GradientBoostedTreesModel(
        task=TASKS[plan.task],
        features=[tfdf.keras.FeatureUsage(name=n, semantic=s) for n, s in inputs.items()],
        exclude_non_specified_features=True,
        num_trees=training.gbt_num_trees, max_depth=training.gbt_max_depth,
        min_examples=training.gbt_min_examples, random_seed=training.seed,
        hyperparameter_template=training.gbt_template or None, verbose=0)


def tree_names(inputs):
    """{transformed feature: the name the trees know it by}, for the features whose name
    TF-DF refuses (a space, '?', '%' or ',' in it: a CSV's 'Date Egg', 'Body Mass (g)'):
    ``features.json_input_name``'s, the same in training and in the exported signatures."""
    return {n: json_input_name(n) for n in inputs if json_input_name(n) != n}


def renamed(transform, names):
    """``transform`` (raw features to transformed ones) with ``names`` applied to its
    output."""
    def apply(raw_features):
        return {names.get(k, k): v for k, v in transform(raw_features).items()}
    return apply


def run_fn(fn_args):
    plan, training = parse_custom_config(fn_args.custom_config)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    raw = not fn_args.custom_config.get('materialized', True)
    transform = transform_function(tft_output)
    inputs = model_inputs(plan, tft_output)
    names = tree_names(inputs)
    if names:
        transform = renamed(transform, names)
        inputs = {names.get(n, n): semantic for n, semantic in inputs.items()}
    # One pass over the train split, in large batches (TF-DF reads it all into memory), in
    # the files' order: TF-DF samples with its own seed, so the trees are reproducible.
    train_ds = make_dataset(fn_args, fn_args.train_files, plan, tft_output,
                            batch_size=max(training.batch_size, 1024), seed=training.seed,
                            raw=raw, num_epochs=1, transform=transform, shuffle=False)
    valid_ds = validation_dataset(fn_args, plan, tft_output, training, raw, transform)
    if names and not raw:  # materialized: renamed here
        rename = lambda x, y: ({names.get(k, k): v for k, v in x.items()}, y)  # noqa: E731
        train_ds, valid_ds = train_ds.map(rename), valid_ds.map(rename)
    model = build_gbt_model(plan, inputs, training)
    model.fit(train_ds, validation_data=valid_ds)
    export_serving_model(model, tft_output, plan, fn_args.serving_model_dir,
                         trainer=TRAINER_NAME, transform=transform, input_names=list(inputs))
