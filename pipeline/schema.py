"""The curated schema: loading it, and making a first draft of it from the data.

A draft is TFDV's inferred schema with the two environments set up: the label (and the
excluded columns) are required in TRAINING only, so a serving request need not carry them.
Closed string domains are kept only for columns with few values; numeric shapes are left
out so that a missing value is a validation anomaly, not a parse error; an optional column
may have zero values (CsvExampleGen's empty cell).
"""
import hashlib
import os
from typing import List

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

TRAINING, SERVING = 'TRAINING', 'SERVING'
# A string column with more distinct values than this gets no closed domain in the draft.
MAX_DOMAIN_VALUES = 20


def parse_schema(text: str, path: str) -> schema_pb2.Schema:
    try:
        return text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as e:
        raise ValueError(f'{path} is not a valid schema text proto: {e}') from None


def load_schema(path: str) -> schema_pb2.Schema:
    with open(path, encoding='utf-8') as f:
        return parse_schema(f.read(), path)


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


def describe_schema(schema: schema_pb2.Schema) -> List[str]:
    """One line per column: name, type, presence, domain, and where it is not expected."""
    domains = {d.name: list(d.value) for d in schema.string_domain}
    rows = []
    for f in schema.feature:
        kind = schema_pb2.FeatureType.Name(f.type)
        presence = ('required' if f.presence.min_fraction >= 1.0
                    else f'optional (min {f.presence.min_count} value'
                         f'{"" if f.presence.min_count == 1 else "s"})')
        if f.HasField('int_domain') or f.HasField('float_domain'):
            d = f.int_domain if f.HasField('int_domain') else f.float_domain
            fmt = 'd' if f.HasField('int_domain') else 'g'
            bounds = [format(getattr(d, b), fmt) if d.HasField(b) else '' for b in ('min', 'max')]
            domain = ' '.join(([f'{bounds[0]}..{bounds[1]}'] if any(bounds) else [])
                              + (['categorical'] if getattr(d, 'is_categorical', False) else [])
                              ) or 'any value'
        elif f.HasField('string_domain') or f.HasField('domain'):
            values = list(f.string_domain.value) if f.HasField('string_domain') \
                else domains.get(f.domain, [])
            domain = '{' + ', '.join(values[:8]) + (', ...' if len(values) > 8 else '') + '}'
        else:
            domain = 'any value'
        where = f'  not in {", ".join(f.not_in_environment)}' if f.not_in_environment else ''
        rows.append((f.name, kind, presence, domain + where))
    width = max([len(r[0]) for r in rows] + [0])
    return [f'{name:{width}}  {kind:6}  {presence:24}  {domain}'
            for name, kind, presence, domain in rows]


def staged_path(digest: str, root: str) -> str:
    """Where a schema whose contents have this sha256 is staged under ``root``."""
    return os.path.join(root, '_schemas', digest[:16], 'schema.pbtxt')


def staged_schema_path(path: str, root: str) -> str:
    """Where ``stage_schema(path, root)`` puts the schema: named for its contents."""
    with open(path, 'rb') as f:
        return staged_path(hashlib.sha256(f.read()).hexdigest(), root)


def write_staged(content: bytes, staged: str) -> str:
    """Writes ``content`` at ``staged`` unless it is there already (written whole: a
    temporary file renamed into place)."""
    if '://' in staged:
        import tensorflow as tf
        exists, makedirs, opener, rename = (tf.io.gfile.exists, tf.io.gfile.makedirs,
                                            tf.io.gfile.GFile, tf.io.gfile.rename)
    else:
        exists, opener = os.path.exists, open

        def makedirs(d):
            os.makedirs(d, exist_ok=True)

        def rename(a, b, overwrite):
            os.replace(a, b)
    if not exists(staged):
        makedirs(os.path.dirname(staged))
        tmp = f'{staged}.tmp-{os.getpid()}'
        with opener(tmp, 'wb') as f:
            f.write(content)
        rename(tmp, staged, overwrite=True)
    return staged


def stage_schema(path: str, pipeline_root: str) -> str:
    """A content-addressed copy of the curated schema under the pipeline root.

    ImportSchemaGen's cache key is the file's path, not its contents; staging the schema at
    a path named for its hash makes an edited schema re-run validation and everything after.
    A run stages the contents its inputs were resolved with (``pipeline/inputs.py``); the
    Dockerfile stages each schema the same way inside the image, for Kubeflow.
    """
    with open(path, 'rb') as f:
        return write_staged(f.read(), staged_schema_path(path, pipeline_root))
