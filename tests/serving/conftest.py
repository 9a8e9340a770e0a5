"""Fixtures for the model server's tests: small SavedModels with the pipeline's serving contract
(see serving/demo_model.py), served in-process on free loopback ports.

Hooks for serving another model, such as the one the end-to-end pipeline pushed:
- `served_model_dir` is the serving dir (the model base path, holding integer version
  directories) that the module-scoped `server` fixture serves; a test module can override it:

      @pytest.fixture(scope="module")
      def served_model_dir(pipeline_run):
          return pipeline_run.serving_dir

- `serve(serving_dir, model_name=...)` starts a server on any serving dir (stopped at the end
  of the test), and `serving_testlib.check_served_model(server)` asserts that whatever it
  serves keeps the pipeline's serving contract:

      def test_the_pushed_model_is_served(serve, pipeline_run):
          check_served_model(serve(pipeline_run.serving_dir, model_name=pipeline_run.name))
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # for serving_testlib, whatever pytest's import mode

from serving import demo_model  # noqa: E402
from serving_testlib import MODEL_NAME, Reference, push_copy, start_server  # noqa: E402


@pytest.fixture(scope="session")
def model_store(tmp_path_factory):
    """SavedModels built once per session, by (task, seed)."""
    root = tmp_path_factory.mktemp("models")
    built = {}

    def get(task="binary", seed=0) -> str:
        key = (task, seed)
        if key not in built:
            built[key] = demo_model.write_model(str(root / f"{task}-{seed}"), task, seed)
        return built[key]

    return get


@pytest.fixture(scope="session")
def served_model_dir(model_store, tmp_path_factory) -> str:
    serving_dir = str(tmp_path_factory.mktemp("serving") / MODEL_NAME)
    push_copy(model_store("binary", 0), serving_dir, 1)
    return serving_dir


@pytest.fixture(scope="module")
def server(served_model_dir):
    srv = start_server(served_model_dir)
    yield srv
    srv.stop()


@pytest.fixture
def serve():
    servers = []

    def start(serving_dir: str, **config):
        servers.append(start_server(serving_dir, **config))
        return servers[-1]

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture(scope="session")
def multiclass_server(model_store, tmp_path_factory):
    serving_dir = str(tmp_path_factory.mktemp("serving-multiclass") / MODEL_NAME)
    push_copy(model_store("multiclass", 0), serving_dir, 1)
    srv = start_server(serving_dir)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def regression_server(model_store, tmp_path_factory):
    serving_dir = str(tmp_path_factory.mktemp("serving-regression") / MODEL_NAME)
    push_copy(model_store("regression", 0), serving_dir, 1)
    srv = start_server(serving_dir)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def reference(model_store):
    """reference(task, seed) -> Reference for that model."""
    cache = {}

    def get(task="binary", seed=0) -> Reference:
        if (task, seed) not in cache:
            cache[(task, seed)] = Reference(model_store(task, seed))
        return cache[(task, seed)]

    return get
