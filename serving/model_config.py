"""The models to serve, from TF Serving's `--model_config_file` (a `ModelServerConfig` in
protobuf text format), so one file configures this server and the real one alike:

    model_config_list {
      config {
        name: "taxi"
        base_path: "/models/taxi"
        model_platform: "tensorflow"
        model_version_policy { specific { versions: 1718000000 versions: 1718100000 } }
        version_labels { key: "stable" value: 1718000000 }
        version_labels { key: "canary" value: 1718100000 }
      }
      config { name: "chicago" base_path: "/models/chicago" }
    }

Used: `name`, `base_path` (relative paths are relative to the working directory, as in TF
Serving), `model_platform` (must be "tensorflow" or empty), `model_version_policy`
(`latest { num_versions }`, default 1 as in TF Serving; `specific { versions }`; `all {}`)
and `version_labels`. `logging_config` and `custom_model_config` are refused rather than
silently ignored. Every refusal names the file and the model.
"""

import dataclasses

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.versions import VersionPolicy


class ConfigError(ValueError):
    """A model config file that cannot be served; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: tuple = ()  # (label, version) pairs

    @property
    def label_map(self) -> dict[str, int]:
        return dict(self.labels)


def _policy(path: str, config) -> VersionPolicy:
    which = config.model_version_policy.WhichOneof("policy_choice")
    if which == "specific":
        versions = frozenset(config.model_version_policy.specific.versions)
        if not versions:
            raise ConfigError(f"{path}: model '{config.name}': model_version_policy.specific lists no versions")
        return VersionPolicy("specific", versions=versions)
    if which == "all":
        return VersionPolicy("all")
    num = config.model_version_policy.latest.num_versions if which == "latest" else 0
    return VersionPolicy("latest", num_versions=num or 1)


def parse(text: str, path: str = "<model config>") -> list[ModelSpec]:
    message = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise ConfigError(f"{path}: not a ModelServerConfig in text format: {e}") from None
    if message.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{path}: needs a model_config_list (custom_model_config is not supported)")
    models, names = [], set()
    for config in message.model_config_list.config:
        where = f"{path}: model '{config.name}'"
        if not config.name:
            raise ConfigError(f"{path}: a config has no name")
        if config.name in names:
            raise ConfigError(f"{where} is configured twice")
        names.add(config.name)
        if not config.base_path:
            raise ConfigError(f"{where} has no base_path")
        if config.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"{where}: model_platform '{config.model_platform}' is not served here (only 'tensorflow')")
        if config.HasField("logging_config"):
            raise ConfigError(f"{where}: logging_config (request logging) is not supported")
        policy = _policy(path, config)
        labels = tuple(sorted(config.version_labels.items()))
        if policy.kind == "specific":
            outside = sorted(label for label, version in labels if version not in policy.versions)
            if outside:
                raise ConfigError(f"{where}: labels {outside} name versions its model_version_policy does not load")
        models.append(ModelSpec(config.name, config.base_path, policy, labels))
    if not models:
        raise ConfigError(f"{path}: model_config_list configures no model")
    return models


def read(path: str) -> list[ModelSpec]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the model config file: {e.strerror}") from None
    return parse(text, path)
