"""The report's Data section: statistics per feature and split, anomalies with what to do,
drift against the previous span, and the curated schema beside TFDV's inferred one.

Everything is read from the artifacts the run's nodes recorded in ML Metadata: the
StatisticsGen statistics (``DatasetFeatureStatisticsList`` protos, read without TFDV), the
validators' ``SchemaDiff.pb`` anomalies, the DriftCheck's measurements, and the two schema
artifacts.
"""
import json
import os
from typing import Any, Dict, List, Optional

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from pipeline.config import ConfigError
from pipeline.inputs import schema_in_use
from pipeline.metadata import NodeExecution, string_property

TOP_VALUES = 10
_TYPES = {statistics_pb2.FeatureNameStatistics.INT: 'INT',
          statistics_pb2.FeatureNameStatistics.FLOAT: 'FLOAT',
          statistics_pb2.FeatureNameStatistics.STRING: 'STRING',
          statistics_pb2.FeatureNameStatistics.BYTES: 'BYTES',
          statistics_pb2.FeatureNameStatistics.STRUCT: 'STRUCT'}


def split_names(artifact) -> List[str]:
    try:
        return list(json.loads(string_property(artifact, 'split_names') or '[]'))
    except ValueError:
        return []


def output(nodes: Dict[str, NodeExecution], node: str, key: str):
    """The first artifact ``node`` wrote under ``key`` in this run, or None."""
    found = nodes.get(node)
    artifacts = found.outputs.get(key) if found else None
    return artifacts[0] if artifacts else None


def eval_records(examples_uri: str, limit: int) -> List[bytes]:
    """The first ``limit`` serialized examples of an Examples artifact's eval split."""
    import glob

    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(examples_uri, 'Split-eval', '*')))
    if not files:
        return []
    batch = tf.data.TFRecordDataset(files, compression_type='GZIP').take(limit).batch(limit)
    return [r for b in batch for r in b.numpy()]  # one read, not one per record


# ----------------------------------------------------------------------------------------
# Statistics


def load_statistics(artifact) -> Dict[str, Any]:
    """{split: DatasetFeatureStatistics} of an ExampleStatistics artifact."""
    found = {}
    for split in split_names(artifact):
        path = os.path.join(artifact.uri, f'Split-{split}', 'FeatureStats.pb')
        if os.path.exists(path):
            with open(path, 'rb') as f:
                proto = statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
        else:  # the other layout TFX writes (a TFRecord), read by TFDV
            import tensorflow_data_validation as tfdv
            proto = tfdv.load_statistics(os.path.join(artifact.uri, f'Split-{split}',
                                                      'stats_tfrecord'))
        if proto.datasets:
            found[split] = proto.datasets[0]
    return found


def _common(stats):
    kind = stats.WhichOneof('stats')
    if kind == 'num_stats':
        return stats.num_stats.common_stats
    if kind == 'string_stats':
        return stats.string_stats.common_stats
    if kind == 'bytes_stats':
        return stats.bytes_stats.common_stats
    if kind == 'struct_stats':
        return stats.struct_stats.common_stats
    return None


def quantile(histogram, q: float) -> Optional[float]:
    """The ``q`` quantile from TFDV's equi-depth (QUANTILES) histogram, interpolated."""
    total = sum(b.sample_count for b in histogram.buckets)
    if not total:
        return None
    target, seen = q * total, 0.0
    for b in histogram.buckets:
        if seen + b.sample_count >= target and b.sample_count:
            return b.low_value + (b.high_value - b.low_value) * (target - seen) / b.sample_count
        seen += b.sample_count
    return histogram.buckets[-1].high_value


def split_stats(stats, num_examples: int) -> Dict[str, Any]:
    """One feature in one split: counts, missing share, summary numbers and its histogram or
    top values. A row counts as missing when the column is absent or holds no value (an empty
    cell of a single-valued column)."""
    common = _common(stats)
    present = common.num_non_missing if common else 0
    empty = (max(0, present - common.tot_num_values)
             if common and common.max_num_values <= 1 else 0)
    missing = num_examples - present + empty
    out: Dict[str, Any] = {'count': num_examples, 'missing': missing,
                           'missing_fraction': missing / num_examples if num_examples else None,
                           'values': common.tot_num_values if common else 0}
    kind = stats.WhichOneof('stats')
    if kind == 'num_stats':
        n = stats.num_stats
        values = common.tot_num_values or 1
        quantiles = next((h for h in n.histograms
                          if h.type == statistics_pb2.Histogram.QUANTILES), None)
        standard = next((h for h in n.histograms
                         if h.type == statistics_pb2.Histogram.STANDARD), None)
        out.update(min=n.min, max=n.max, mean=n.mean, std=n.std_dev,
                   median=n.median if n.median else (quantile(quantiles, 0.5) if quantiles else None),
                   zeros_fraction=n.num_zeros / values if common.tot_num_values else None)
        if standard is not None:
            out['histogram'] = [{'low': b.low_value, 'high': b.high_value,
                                 'fraction': b.sample_count / values} for b in standard.buckets]
    elif kind == 'string_stats':
        s = stats.string_stats
        values = common.tot_num_values or 1
        out.update(distinct=s.unique, avg_length=s.avg_length)
        out['top'] = [{'value': t.value, 'fraction': t.frequency / values}
                      for t in s.top_values[:TOP_VALUES]]
    return out


def feature_table(statistics: Dict[str, Any], label: str, excluded) -> List[Dict[str, Any]]:
    """One row per feature (in the order of the first split), its splits side by side."""
    by_split = {split: {'/'.join(f.path.step) or f.name: f for f in ds.features}
                for split, ds in statistics.items()}
    names: List[str] = []
    for features in by_split.values():
        names += [n for n in features if n not in names]
    rows = []
    for name in names:
        first = next(features[name] for features in by_split.values() if name in features)
        rows.append({
            'name': name,
            'type': _TYPES.get(first.type, str(first.type)),
            'role': 'label' if name == label else ('excluded' if name in excluded else 'feature'),
            'numeric': first.WhichOneof('stats') == 'num_stats',
            'splits': {split: split_stats(features[name], statistics[split].num_examples)
                       for split, features in by_split.items() if name in features},
        })
    return rows


# ----------------------------------------------------------------------------------------
# Anomalies


def _advice(kind: str, feature: str, schema_path: str) -> str:
    """What to do about one anomaly, by TFDV's reason type."""
    schema = schema_path or 'the curated schema'
    if 'COMPARATOR_' in kind:
        return (f'The distribution moved from the previous span by more than validation.drift '
                f'allows. Confirm the change is real (a new source, a new season); if it is '
                f'expected, raise validation.drift.per_feature.{feature} or rerun with '
                f'--allow-anomalies.')
    if 'UNEXPECTED_STRING_VALUES' in kind:
        return (f'Values outside the domain the schema lists. If they are valid, add them to '
                f'the domain of {feature} in {schema}; if not, fix the rows upstream.')
    if 'SCHEMA_NEW_COLUMN' in kind:
        return (f'A column the schema does not list. Add it to {schema} (draft-schema shows '
                f"TFDV's view of it), or drop it from the CSV files.")
    if 'SCHEMA_MISSING_COLUMN' in kind or 'NOT_PRESENT' in kind:
        return (f'A column the schema requires is absent. Restore it in the data, or relax '
                f'its presence (or its environments) in {schema}.')
    if 'LOW_FRACTION_PRESENT' in kind or 'LOW_NUMBER_PRESENT' in kind or 'NO_VALUES' in kind:
        return (f'The column is empty more often than its presence in the schema allows. Find '
                f'where values went missing upstream; lower presence.min_fraction in {schema} '
                f'only if the gaps are expected.')
    if any(k in kind for k in ('BIG_INT', 'SMALL_INT', 'BIG_FLOAT', 'SMALL_FLOAT')):
        return (f'Values outside the range the schema allows. Fix the rows if they are wrong; '
                f'widen the domain of {feature} in {schema} if the range really grew.')
    if 'HAS_NAN' in kind or 'HAS_INF' in kind:
        return 'NaN or infinite values: clean them upstream, or leave the cell empty.'
    if 'NUMBER_VALUES' in kind or 'REPEATED' in kind:
        return f'Rows hold more or fewer values than the valency {schema} sets for {feature}.'
    if '_NOT_' in kind or '_NOW_' in kind or 'EXPECTED' in kind:
        return (f"The column's type changed. Check what produces the data; change the type in "
                f'{schema} only if the change is intended.')
    if 'NUM_EXAMPLES' in kind or 'NO_DATA' in kind:
        return 'The data has too few (or too many) rows: check that every file was delivered.'
    return (f'Compare the data with {schema}: fix the data, or update the schema if the change '
            f'is expected, or rerun with --allow-anomalies.')


def anomaly_rows(found: List[Dict[str, Any]], schema_path: str) -> List[Dict[str, Any]]:
    return [dict(a, advice=_advice(a.get('kind', ''), a.get('feature', ''), schema_path))
            for a in found]


def drift_measurements(nodes: Dict[str, NodeExecution]) -> Optional[Dict[str, Any]]:
    """The DriftCheck's per-feature distances against the previous span, with thresholds."""
    check = nodes.get('DriftCheck')
    artifact = output(nodes, 'DriftCheck', 'anomalies')
    if check is None or artifact is None:
        return None
    rows = []
    for split in split_names(artifact):
        path = os.path.join(artifact.uri, f'Split-{split}', 'SchemaDiff.pb')
        if not os.path.exists(path):
            continue
        with open(path, 'rb') as f:
            proto = anomalies_pb2.Anomalies.FromString(f.read())
        for info in proto.drift_skew_info:
            for m in info.drift_measurements:
                rows.append({'split': split, 'feature': '/'.join(info.path.step),
                             'measure': anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type),
                             'value': m.value, 'threshold': m.threshold,
                             'drifted': m.value > m.threshold})
    spans = {key: string_property(artifacts[0], 'span')
             for key, artifacts in check.inputs.items()
             if key in ('statistics', 'previous_statistics') and artifacts}
    return {'thresholds': check.prop('thresholds', {}), 'measurements': rows,
            'artifact': artifact.uri, 'spans': spans}


# ----------------------------------------------------------------------------------------
# Schema


def load_schema(artifact) -> Optional[schema_pb2.Schema]:
    if artifact is None:
        return None
    path = os.path.join(artifact.uri, 'schema.pbtxt')
    if not os.path.exists(path):
        return None
    with open(path, encoding='utf-8') as f:
        return text_format.Parse(f.read(), schema_pb2.Schema())


def domain_text(schema: schema_pb2.Schema, feature) -> str:
    if feature.HasField('int_domain'):
        d = feature.int_domain
        text = (f'int [{d.min if d.HasField("min") else "-inf"}, '
                f'{d.max if d.HasField("max") else "inf"}]')
        return text + (' categorical' if d.is_categorical else '')
    if feature.HasField('float_domain'):
        d = feature.float_domain
        return (f'float [{f"{d.min:g}" if d.HasField("min") else "-inf"}, '
                f'{f"{d.max:g}" if d.HasField("max") else "inf"}]')
    values = None
    if feature.HasField('string_domain'):
        values = list(feature.string_domain.value)
    elif feature.HasField('domain'):
        values = next((list(d.value) for d in schema.string_domain if d.name == feature.domain), [])
    if values is not None:
        shown = ', '.join(values[:8]) + (', ...' if len(values) > 8 else '')
        return f'{len(values)} values: {shown}'
    if feature.HasField('bool_domain'):
        return 'bool'
    return ''


def _presence(feature) -> str:
    p = feature.presence
    parts = []
    if p.HasField('min_fraction'):
        parts.append(f'min fraction {p.min_fraction:g}')
    if p.HasField('min_count'):
        parts.append(f'min count {p.min_count}')
    return ', '.join(parts)


def _valency(feature) -> str:
    if feature.HasField('shape'):
        return 'shape [' + ', '.join(str(d.size) for d in feature.shape.dim) + ']'
    if feature.HasField('value_count'):
        v = feature.value_count
        return f'{v.min}..{v.max}' if v.min != v.max else str(v.min)
    return ''


def environments(schema: schema_pb2.Schema, feature) -> List[str]:
    envs = list(schema.default_environment)
    if feature.in_environment:
        envs = sorted(set(envs) | set(feature.in_environment))
    return [e for e in envs if e not in feature.not_in_environment]


def schema_rows(schema: schema_pb2.Schema) -> List[Dict[str, Any]]:
    return [{'name': f.name, 'type': schema_pb2.FeatureType.Name(f.type),
             'presence': _presence(f), 'valency': _valency(f), 'domain': domain_text(schema, f),
             'environments': environments(schema, f)} for f in schema.feature]


def schema_diff(curated: schema_pb2.Schema, inferred: schema_pb2.Schema) -> List[Dict[str, str]]:
    """Where TFDV's inferred schema differs from the curated one, field by field."""
    ours = {r['name']: r for r in schema_rows(curated)}
    theirs = {r['name']: r for r in schema_rows(inferred)}
    diff = []
    for name in list(ours) + [n for n in theirs if n not in ours]:
        if name not in theirs:
            diff.append({'feature': name, 'field': 'feature', 'curated': 'listed',
                         'inferred': 'absent from the data'})
            continue
        if name not in ours:
            diff.append({'feature': name, 'field': 'feature', 'curated': 'not listed',
                         'inferred': 'found in the data'})
            continue
        for field in ('type', 'presence', 'valency', 'domain'):
            # Where TFDV infers nothing (numeric ranges, valency without shape inference)
            # its silence is no disagreement.
            if theirs[name][field] and ours[name][field] != theirs[name][field]:
                diff.append({'feature': name, 'field': field, 'curated': ours[name][field] or '-',
                             'inferred': theirs[name][field] or '-'})
    return diff


def statistics_sample_rate(nodes: Dict[str, NodeExecution]) -> Optional[float]:
    """The share of rows StatisticsGen sampled (TFDV's ``StatsOptions.sample_rate``, set
    above ``pipeline.STATS_SAMPLE_ROWS`` rows); None when it read every row."""
    node = nodes.get('StatisticsGen')
    options = string_property(node.execution, 'stats_options_json') if node else ''
    if not options:
        return None
    import tensorflow_data_validation as tfdv
    try:
        rate = tfdv.StatsOptions.from_json(options).sample_rate
    except (ValueError, TypeError):
        return None
    return rate if rate is not None and 0 < rate < 1 else None


def gather_data(nodes: Dict[str, NodeExecution], summary: Dict[str, Any], config) -> Dict[str, Any]:
    statistics_artifact = output(nodes, 'StatisticsGen', 'statistics')
    statistics = load_statistics(statistics_artifact) if statistics_artifact else {}
    curated = load_schema(output(nodes, 'ImportSchemaGen', 'schema'))
    inferred = load_schema(output(nodes, 'InferredSchemaGen', 'schema'))
    anomalies = summary.get('anomalies')
    drift = summary.get('drift')
    try:  # the curated file (data.schema, or schemas/<name>/schema.pbtxt when not set)
        schema_path = schema_in_use(config)
    except ConfigError:  # moved or deleted since the run
        schema_path = config.data.schema
    return {
        'statistics_artifact': statistics_artifact.uri if statistics_artifact else None,
        'splits': list(statistics),
        'examples': {split: ds.num_examples for split, ds in statistics.items()},
        'sample_rate': statistics_sample_rate(nodes),
        'features': feature_table(statistics, config.data.label, set(config.data.exclude)),
        'anomalies': None if anomalies is None else {
            'artifacts': anomalies.get('artifacts', {}),
            'found': anomaly_rows(anomalies.get('found', []), schema_path)},
        'drift': None if drift is None and 'DriftCheck' not in nodes else {
            'found': anomaly_rows((drift or {}).get('found', []), schema_path),
            **(drift_measurements(nodes) or {})},
        'schema': {
            'path': schema_path,
            'artifact': (output(nodes, 'ImportSchemaGen', 'schema').uri
                         if curated is not None else None),
            'environments': list(curated.default_environment) if curated is not None else [],
            'features': schema_rows(curated) if curated is not None else [],
            'diff': schema_diff(curated, inferred) if curated is not None and inferred is not None
            else None,
        },
    }
