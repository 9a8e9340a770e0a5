"""DriftCheck's executor: TFDV's ``validate_statistics(previous_statistics=...)``.

The comparison is TFDV's own: a ``drift_comparator`` on each schema feature, L-infinity for
categorical features (strings, and integers the schema marks ``is_categorical``),
Jensen-Shannon divergence for numeric ones. Only the comparator anomalies are kept: the
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

DRIFT_KINDS = {anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
               anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH}


def is_categorical(feature: schema_pb2.Feature) -> bool:
    return (feature.type == schema_pb2.BYTES
            or (feature.HasField('int_domain') and feature.int_domain.is_categorical))


def set_comparators(schema: schema_pb2.Schema, thresholds: Dict[str, Any]) -> schema_pb2.Schema:
    """A copy of ``schema`` with a drift comparator on each feature that has a threshold."""
    schema = schema_pb2.Schema.FromString(schema.SerializeToString())
    per_feature = thresholds.get('per_feature') or {}
    for feature in schema.feature:
        categorical = is_categorical(feature)
        default = thresholds.get('default_linf' if categorical else 'default_js')
        value: Optional[float] = per_feature.get(feature.name, default)
        feature.ClearField('drift_comparator')
        if value is None:
            continue
        if categorical:
            feature.drift_comparator.infinity_norm.threshold = value
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = value
    return schema


def drift_anomalies(statistics, previous_statistics, schema: schema_pb2.Schema,
                    thresholds: Dict[str, Any]) -> anomalies_pb2.Anomalies:
    """The drift anomalies of ``statistics`` against ``previous_statistics`` (DatasetFeatureStatisticsList)."""
    import tensorflow_data_validation as tfdv

    found = tfdv.validate_statistics(statistics, set_comparators(schema, thresholds),
                                     previous_statistics=previous_statistics)
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
