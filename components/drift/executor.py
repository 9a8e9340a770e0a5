"""DriftCheck's executor: TFDV's ``validate_statistics(previous_statistics=...)``.

The comparison is TFDV's own: a ``drift_comparator`` on each schema feature, L-infinity for
categorical (string) features, Jensen-Shannon divergence for numeric ones (see
``is_categorical``). Only the comparator anomalies are kept: the
schema anomalies of the same statistics are ExampleValidator's to report, once.
"""
import json
import os
from typing import Any, Dict, List, Optional

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import types
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, writer_utils

# The reasons the drift and skew comparators give.
DRIFT_KINDS = {anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
               anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH}


def is_categorical(feature: schema_pb2.Feature) -> bool:
    """String features. Integers marked ``is_categorical`` (hour, day, areas) are compared
    as numbers: StatisticsGen (run without a schema) records no value counts for integer
    columns, and TFDV's L-infinity comparator then silently checks nothing."""
    return feature.type == schema_pb2.BYTES


def set_comparators(schema: schema_pb2.Schema, thresholds: Dict[str, Any],
                    comparator: str = 'drift_comparator') -> schema_pb2.Schema:
    """A copy of ``schema`` with a comparator on each feature that has a threshold.

    ``comparator`` is ``drift_comparator`` (span against span) or ``skew_comparator``
    (serving logs against training data).
    """
    schema = schema_pb2.Schema.FromString(schema.SerializeToString())
    per_feature = thresholds.get('per_feature') or {}
    for feature in schema.feature:
        categorical = is_categorical(feature)
        default = thresholds.get('default_linf' if categorical else 'default_js')
        value: Optional[float] = per_feature.get(feature.name, default)
        feature.ClearField(comparator)
        if value is None:
            continue
        if categorical:
            getattr(feature, comparator).infinity_norm.threshold = value
        else:
            getattr(feature, comparator).jensen_shannon_divergence.threshold = value
    return schema


def comparator_anomalies(found: anomalies_pb2.Anomalies) -> anomalies_pb2.Anomalies:
    """``found`` with only the comparators' reasons (drift or skew) kept."""
    result = anomalies_pb2.Anomalies()
    result.CopyFrom(found)
    result.ClearField('anomaly_info')
    result.ClearField('dataset_anomaly_info')
    for name, info in found.anomaly_info.items():
        reasons = [r for r in info.reason if r.type in DRIFT_KINDS]
        if reasons:
            kept = result.anomaly_info[name]
            kept.CopyFrom(info)
            del kept.reason[:]
            kept.reason.extend(reasons)
            kept.description = ' '.join(r.description for r in reasons)
            kept.short_description = ' '.join(r.short_description for r in reasons)
    return result


def drift_anomalies(statistics, previous_statistics, schema: schema_pb2.Schema,
                    thresholds: Dict[str, Any]) -> anomalies_pb2.Anomalies:
    """The drift anomalies of ``statistics`` against ``previous_statistics`` (DatasetFeatureStatisticsList)."""
    import tensorflow_data_validation as tfdv

    return comparator_anomalies(tfdv.validate_statistics(
        statistics, set_comparators(schema, thresholds), previous_statistics=previous_statistics))


def serving_anomalies(serving_statistics, training_statistics, schema: schema_pb2.Schema,
                      thresholds: Dict[str, Any]) -> anomalies_pb2.Anomalies:
    """Serving logs against the curated schema in its SERVING environment (the label and the
    TRAINING-only columns may be absent), plus their skew against the training data, with
    the same thresholds as drift (docs/validation.md, "Training/serving skew")."""
    import tensorflow_data_validation as tfdv

    result = tfdv.validate_statistics(serving_statistics, schema, environment='SERVING')
    skew = comparator_anomalies(tfdv.validate_statistics(
        training_statistics, set_comparators(schema, thresholds, 'skew_comparator'),
        serving_statistics=serving_statistics))
    for name, info in skew.anomaly_info.items():
        result.anomaly_info[name].reason.extend(info.reason)
        result.anomaly_info[name].description = ' '.join(
            filter(None, [result.anomaly_info[name].description, info.description]))
    return result


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        split = exec_properties['split']
        current = artifact_utils.get_single_instance(input_dict['statistics'])
        previous = artifact_utils.get_single_instance(input_dict['previous_statistics'])
        schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(
            artifact_utils.get_single_uri(input_dict['schema'])))
        anomalies = drift_anomalies(
            stats_artifact_utils.load_statistics(current, split).proto(),
            stats_artifact_utils.load_statistics(previous, split).proto(),
            schema, json.loads(exec_properties['thresholds']))
        output = artifact_utils.get_single_instance(output_dict['anomalies'])
        output.split_names = artifact_utils.encode_split_names([split])
        # ExampleValidator's layout, so the gate (and report) read both the same way.
        writer_utils.write_anomalies(
            os.path.join(output.uri, f'Split-{split}', 'SchemaDiff.pb'), anomalies)
