"""Serving signatures, built in one place and named for what calls them.

``serving_default``     TF Serving clients and the Evaluator: serialized raw ``tf.Example``s
                        (no label) in ``examples``.
``serving_json``        JSON / REST clients: one tensor per raw feature, each shape [batch],
                        named by ``features.json_input_name`` (the column's name when
                        TensorFlow takes it as a tensor name).
                        A missing value is "" for a string, NaN for a float and
                        ``MISSING_INT64`` for an integer (the model server turns JSON's
                        ``null`` or an absent key into these).
``transform_features``  TFMA: serialized raw examples, label included, to transformed
                        features (it reads the transformed label from here).

Every predicting signature returns, by task (``features.OUTPUT_KEYS``):
binary ``probability`` [batch] (of the positive class); multi-class ``probabilities``
[batch, K] and ``classes`` [batch, K]; regression ``value`` [batch].
The TFT graph travels inside the SavedModel, so clients send raw features.

The SavedModel also records which trainer made it, in ``assets/trainer.txt`` (``keras``,
``estimator`` or ``gbt``; also ``tf.saved_model.load(path).trainer_name.asset_path``).
Nothing else differs between the trainers' exports (a ``gbt`` model also needs TensorFlow
Decision Forests' ops to load: ``import tensorflow_decision_forests`` first).
"""
import logging
import os
import tempfile

import tensorflow as tf

from components.features import CLASSES_OUTPUT, LABEL_VOCAB, FeaturePlan, json_inputs

SERVING_DEFAULT = 'serving_default'
SERVING_JSON = 'serving_json'
TRANSFORM_FEATURES = 'transform_features'


def serving_feature_spec(plan: FeaturePlan, tft_output):
    """The raw features a client sends: the schema's, less the label and excluded columns."""
    spec = dict(tft_output.raw_feature_spec())
    for name in (plan.label, *plan.excluded):
        spec.pop(name, None)
    return spec


# The integer a `serving_json` client sends for a missing integer feature (int64's smallest
# value): JSON's numbers and TensorProtos have no null, and NaN is a float. The model server
# sends it for a JSON `null` or an absent key; a gRPC client sends it itself.
MISSING_INT64 = -2**63


def _from_dense(value, spec, name):
    """One JSON feature column ([batch]) to what parsing a tf.Example would have given.

    A missing value ("" for a string, NaN for a float, ``MISSING_INT64`` for an integer)
    is as a feature the example lacks: no entry of a VarLenFeature; a FixedLenFeature's
    default, or, without one, a refusal naming the feature (as parsing refuses the example).
    """
    if value.dtype == tf.string:
        present = tf.not_equal(value, '')
    elif value.dtype.is_floating:
        present = tf.logical_not(tf.math.is_nan(value))
    else:
        present = tf.not_equal(value, MISSING_INT64)
    if isinstance(spec, tf.io.FixedLenFeature):
        if spec.default_value is None:
            check = tf.debugging.Assert(
                tf.reduce_all(present),
                [f'Feature: {name} (data type: {value.dtype.name}) is required but could '
                 'not be found (a missing value in serving_json).'])
            with tf.control_dependencies([check]):
                value = tf.identity(value)
        else:
            default = tf.reshape(tf.constant(spec.default_value, value.dtype), [])
            value = tf.where(present, value, default)
        return tf.reshape(value, [-1, *spec.shape])
    rows = tf.where(present)  # [n, 1]
    indices = tf.concat([rows, tf.zeros_like(rows)], axis=1)
    return tf.SparseTensor(indices, tf.gather_nd(value, rows),
                           tf.stack([tf.shape(value, out_type=tf.int64)[0], 1]))


def raw_features_from_json(features, feature_spec):
    """``serving_json``'s inputs (one [batch] tensor per raw feature) as parsing tf.Examples
    with ``feature_spec`` would have given them."""
    return {name: _from_dense(features[name], spec, name) for name, spec in feature_spec.items()}


def transform_function(tft_output):
    """``tft_output``'s TFT layer as one ``tf.function``, for everything in a process that
    applies it (the training and validation inputs, the three signatures).

    Each call of the layer in a new graph traces it again, and prunes the TF1 transform
    graph (``force_tf_compat_v1``) again, ~0.3 s each; through this function it is traced
    once per set of raw features: once with the label (training, validation,
    ``transform_features``) and once without (serving). The SavedModel then holds that
    graph twice, not once per signature.
    """
    layer = tft_output.transform_features_layer()

    # reduce_retracing: a JSON client's sparse features ([batch, 1]) reuse the trace made
    # for parsed tf.Examples' ([batch, None]).
    @tf.function(autograph=False, reduce_retracing=True)
    def transform(raw_features):
        return layer(raw_features)

    return transform


def make_signatures(model: tf.keras.Model, tft_output, plan: FeaturePlan, transform=None,
                    input_names=None):
    """The three signatures for ``model.save``; the model keeps the TFT layer as an attribute.

    ``transform``: the ``transform_function`` the trainer already applied, if any.
    ``input_names``: the transformed features the model takes (default: its Keras inputs).
    """
    from components.transform import unreadable_date_checks

    input_names = list(input_names or model.input_names)
    model.tft_layer = tft_output.transform_features_layer()
    transform = transform or transform_function(tft_output)
    serving_spec = serving_feature_spec(plan, tft_output)
    raw_spec = tft_output.raw_feature_spec()
    class_names = None
    if plan.task == 'multiclass':
        class_names = tf.constant(tft_output.vocabulary_by_name(LABEL_VOCAB))

    # The model's graph traced once for both predicting signatures, not once in each.
    @tf.function(autograph=False, reduce_retracing=True)
    def score(inputs):
        return model(inputs)

    def predict(raw):
        transformed = transform(raw)
        scores = score({name: transformed[name] for name in input_names})
        if plan.task != 'multiclass':
            outputs = {plan.output_key: tf.reshape(scores, [-1])}
        else:
            classes = tf.tile(class_names[tf.newaxis, :], [tf.shape(scores)[0], 1])
            outputs = {plan.output_key: scores, CLASSES_OUTPUT: classes}
        with tf.control_dependencies(unreadable_date_checks(plan, raw)):
            return {key: tf.identity(value) for key, value in outputs.items()}

    # autograph=False: these are straight-line graphs (Python branches on settings only);
    # converting them and the TFT layer's code they call was ~1 s of every export.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')],
                 autograph=False)
    def serve_examples(examples):
        return predict(tf.io.parse_example(examples, serving_spec))

    # Keyed by raw feature; the signature's input names are json_input_name's.
    @tf.function(input_signature=[{feature: tf.TensorSpec([None], serving_spec[feature].dtype,
                                                          name=name)
                                   for name, feature in json_inputs(serving_spec).items()}],
                 autograph=False)
    def serve_json(features):
        return predict(raw_features_from_json(features, serving_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')],
                 autograph=False)
    def transform_features(examples):
        return transform(tf.io.parse_example(examples, raw_spec))

    return {
        SERVING_DEFAULT: serve_examples.get_concrete_function(),
        SERVING_JSON: serve_json.get_concrete_function(),
        TRANSFORM_FEATURES: transform_features.get_concrete_function(),
    }


TRAINER_ASSET = 'trainer.txt'


def export_serving_model(model: tf.keras.Model, tft_output, plan: FeaturePlan, path: str,
                         trainer: str = 'keras', transform=None, input_names=None) -> None:
    signatures = make_signatures(model, tft_output, plan, transform, input_names)
    with tempfile.TemporaryDirectory() as tmp:
        asset = os.path.join(tmp, TRAINER_ASSET)
        with open(asset, 'w', encoding='utf-8') as f:
            f.write(trainer + '\n')
        model.trainer_name = tf.saved_model.Asset(asset)
        # save_traces=False: Keras does not trace every layer's call for the SavedModel (the
        # model is rebuilt from its config by tf.keras.models.load_model, as all its layers
        # are built-in). Export takes half the time, and loading it (TFMA, TF Serving) is
        # about twice as fast. The signatures are traced and saved either way.
        # include_optimizer=False: serving needs no optimizer state, and a warm start loads
        # the layers' weights only (estimator_trainer.load_weights).
        model.save(path, save_format='tf', signatures=signatures, save_traces=False,
                   include_optimizer=False)


def load_saved_model(path: str):
    """``tf.saved_model.load`` of an exported model, for every reader of one (the server,
    batch predictions, the checks and the report). A model whose ops live in a library of
    their own (TensorFlow Decision Forests' for the ``gbt`` trainer) needs that library
    imported first: that import is made here, only for a model that needs it (it costs
    start-up time)."""
    try:
        return tf.saved_model.load(path)
    except (tf.errors.NotFoundError, RuntimeError, ValueError) as e:
        # "Op type not registered 'SimpleMLLoadModelFromPathWithHandle'" (the error's type
        # depends on where loading meets the op)
        if 'SimpleML' not in str(e):
            raise
    # TF-DF 1.8.1 warns at import that it was built against TF 2.15.0; the lock's 2.15.1 is
    # its patch release, which it matches (the project's tests load and serve its models).
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        import tensorflow_decision_forests  # noqa: F401  pylint: disable=unused-import
    finally:
        root.setLevel(level)
    return tf.saved_model.load(path)


def read_trainer(saved_model_dir: str) -> str:
    """The trainer recorded in an exported model ('' when it records none)."""
    path = os.path.join(saved_model_dir, 'assets', TRAINER_ASSET)
    if not tf.io.gfile.exists(path):
        return ''
    with tf.io.gfile.GFile(path) as f:
        return f.read().strip()
