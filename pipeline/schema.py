"""The curated schema: loading it, and making a first draft of it from the data.

A draft is TFDV's inferred schema with the two environments set up: the label (and the
excluded columns) are required in TRAINING only, so a serving request need not carry them.
Closed string domains are kept only for columns with few values; numeric shapes are left
out so that a missing value is a validation anomaly, not a parse error; an optional column
may have zero values (CsvExampleGen's empty cell).
"""
import hashlib
import os

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

TRAINING, SERVING = 'TRAINING', 'SERVING'
# A string column with more distinct values than this gets no closed domain in the draft.
MAX_DOMAIN_VALUES = 20


def load_schema(path: str) -> schema_pb2.Schema:
    with open(path, encoding='utf-8') as f:
        try:
            return text_format.Parse(f.read(), schema_pb2.Schema())
        except text_format.ParseError as e:
            raise ValueError(f'{path}: not a valid schema text proto: {e}') from e


def write_schema(schema: schema_pb2.Schema, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(text_format.MessageToString(schema))
    os.replace(tmp, path)


def draft_schema(csv_pattern: str, label: str, training_only=()) -> schema_pb2.Schema:
    """TFDV's inferred schema of the CSV files, with environments and modest domains."""
    import tensorflow_data_validation as tfdv

    stats = tfdv.generate_statistics_from_csv(data_location=csv_pattern)
    schema = tfdv.infer_schema(stats, infer_feature_shape=False)
    small = {d.name for d in schema.string_domain if len(d.value) <= MAX_DOMAIN_VALUES}
    keep = [d for d in schema.string_domain if d.name in small]
    del schema.string_domain[:]
    schema.string_domain.extend(keep)
    for f in schema.feature:
        if f.HasField('domain') and f.domain not in small:
            f.ClearField('domain')
    for f in schema.feature:
        # CsvExampleGen writes an empty cell as a feature with no values, so an optional
        # column must allow zero values.
        if f.presence.min_fraction < 1.0 and f.HasField('value_count'):
            f.value_count.min = 0
    schema.default_environment[:] = [TRAINING, SERVING]
    for f in schema.feature:
        if f.name == label or f.name in training_only:
            f.not_in_environment.append(SERVING)
    return schema


def ensure_schema(config, log=print) -> schema_pb2.Schema:
    """The curated schema of ``config``; drafted from the data if the file does not exist."""
    path = config.data.schema
    if not os.path.exists(path):
        from pipeline.spans import input_glob
        pattern = input_glob(config.data.root)
        schema = draft_schema(pattern, config.data.label, config.data.exclude)
        write_schema(schema, path)
        log(f'No schema at {path}: drafted one from {pattern}. Review it, then commit it.')
    return load_schema(path)


def stage_schema(path: str, pipeline_root: str) -> str:
    """A content-addressed copy of the curated schema under the pipeline root.

    ImportSchemaGen's cache key is the file's path, not its contents; staging the schema at
    a path named for its hash makes an edited schema re-run validation and everything after.
    """
    import tensorflow as tf

    with open(path, 'rb') as f:
        content = f.read()
    staged_dir = os.path.join(pipeline_root, '_schemas', hashlib.sha256(content).hexdigest()[:16])
    staged = os.path.join(staged_dir, 'schema.pbtxt')
    if not tf.io.gfile.exists(staged):
        tf.io.gfile.makedirs(staged_dir)
        with tf.io.gfile.GFile(staged + '.tmp', 'wb') as f:
            f.write(content)
        tf.io.gfile.rename(staged + '.tmp', staged, overwrite=True)
    return staged
