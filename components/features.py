"""The feature spec: the one place that knows feature names, kinds, the label and transformed names.

It is built once per pipeline from the curated schema and the config
(:func:`plan_from_schema`) and handed to Transform and Trainer as ``custom_config['features']``
(a plain dict), so the preprocessing, the model, the signatures and the evaluation all read
the same names. Nothing here is specific to one dataset.

Kinds:
  numeric      float or integer column: missing values filled with the mean, z-score scaled.
  categorical  string column, or integer column the schema marks categorical (hour, day,
               month...): ids from a vocabulary, plus out-of-vocabulary buckets. When the
               schema closes the column's domain (an ``int_domain`` with min and max, or a
               string domain) with at most ``vocab_size`` values, the vocabulary is that
               domain, in the schema's order (``Feature.vocabulary``); otherwise Transform
               computes it from the data, most frequent first.
  bucketized   numeric column cut into quantile buckets (coordinates, for instance).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

NUMERIC, CATEGORICAL, BUCKETIZED = 'numeric', 'categorical', 'bucketized'
FLOAT, INT, STRING = 'float', 'int', 'string'

# Names of the model's outputs in every serving signature, by task.
OUTPUT_KEYS = {'binary': 'probability', 'multiclass': 'probabilities', 'regression': 'value'}
CLASSES_OUTPUT = 'classes'
LABEL_VOCAB = 'label'


def transformed_name(name: str) -> str:
    return f'{name}_xf'


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    dtype: str
    buckets: int = 0
    # Categorical only: the fixed vocabulary, from the schema's closed domain (see above).
    # Empty: Transform computes it from the data. A vocabulary from the data costs a Beam
    # analysis of its own (~2 s of Transform's fixed cost each, most of it at small data);
    # the domain is also the contract validation enforces, so values outside it are
    # anomalies, and at serving they fall into the out-of-vocabulary buckets.
    vocabulary: Tuple[str, ...] = ()

    @property
    def xf(self) -> str:
        return transformed_name(self.name)


@dataclass(frozen=True)
class FeaturePlan:
    features: Tuple[Feature, ...]
    label: str
    label_dtype: str
    task: str
    positive_class: str = ''
    vocab_size: int = 1000
    oov_buckets: int = 10
    one_hot_max: int = 64
    embedding_dim: int = 8
    # Raw columns that are read but not features (besides the label), e.g. leaks.
    excluded: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def label_xf(self) -> str:
        return transformed_name(self.label)

    @property
    def output_key(self) -> str:
        return OUTPUT_KEYS[self.task]

    def of_kind(self, kind: str) -> List[Feature]:
        return [f for f in self.features if f.kind == kind]

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'FeaturePlan':
        d = dict(d)
        d['features'] = tuple(Feature(**dict(f, vocabulary=tuple(f.get('vocabulary', ()))))
                              for f in d['features'])
        d['excluded'] = tuple(d.get('excluded', ()))
        return cls(**d)


def _dtype(feature) -> str:
    from tensorflow_metadata.proto.v0 import schema_pb2
    return {schema_pb2.FLOAT: FLOAT, schema_pb2.INT: INT, schema_pb2.BYTES: STRING}[feature.type]


def closed_domain(schema, feature, limit: int) -> Tuple[str, ...]:
    """The values the schema allows a column, as strings, when it lists at most ``limit``
    of them: an ``int_domain``'s min..max, or a string domain (inline or named). Empty when
    the domain is open or larger."""
    if feature.HasField('int_domain'):
        d = feature.int_domain
        if d.HasField('min') and d.HasField('max') and 0 < d.max - d.min + 1 <= limit:
            return tuple(str(v) for v in range(d.min, d.max + 1))
        return ()
    if feature.HasField('string_domain'):
        values = feature.string_domain.value
    elif feature.HasField('domain'):
        values = next((d.value for d in schema.string_domain if d.name == feature.domain), [])
    else:
        return ()
    return tuple(values) if 0 < len(values) <= limit else ()


def plan_from_schema(schema, config) -> FeaturePlan:
    """Decides each column's kind from the schema, then the config's explicit choices."""
    fc = config.features
    by_name = {f.name: f for f in schema.feature}
    if config.data.label not in by_name:
        raise ValueError(f'{config.data.schema}: the label {config.data.label!r} is not a feature '
                         f'of the schema')
    features = []
    for f in schema.feature:
        if f.name == config.data.label or f.name in config.data.exclude:
            continue
        dtype = _dtype(f)
        if f.name in fc.bucketize:
            if dtype == STRING:
                raise ValueError(f'features.bucketize.{f.name}: column is a string, expected numeric')
            features.append(Feature(f.name, BUCKETIZED, dtype, fc.bucketize[f.name]))
        elif f.name in fc.categorical or f.name not in fc.numeric and (
                dtype == STRING or (f.HasField('int_domain') and f.int_domain.is_categorical)):
            features.append(Feature(f.name, CATEGORICAL, dtype,
                                    vocabulary=closed_domain(schema, f, fc.vocab_size)))
        else:
            if f.name in fc.numeric and dtype == STRING:
                raise ValueError(f'features.numeric: column {f.name!r} is a string, expected numeric')
            features.append(Feature(f.name, NUMERIC, dtype))
    label_dtype = _dtype(by_name[config.data.label])
    task = config.data.task
    if task == 'binary' and label_dtype == STRING and not config.data.positive_class:
        raise ValueError(f'data.positive_class: the label {config.data.label!r} holds strings; '
                         f'name the value that counts as the positive class')
    if task == 'regression' and label_dtype == STRING:
        raise ValueError(f'data.task: regression needs a numeric label, {config.data.label!r} '
                         f'holds strings')
    return FeaturePlan(features=tuple(features), label=config.data.label,
                       label_dtype=label_dtype, task=task,
                       positive_class=config.data.positive_class,
                       vocab_size=fc.vocab_size, oov_buckets=fc.oov_buckets,
                       one_hot_max=fc.one_hot_max, embedding_dim=fc.embedding_dim,
                       excluded=tuple(config.data.exclude))
