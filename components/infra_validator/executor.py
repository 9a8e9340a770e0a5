"""InfraValidator's executor: the candidate in a real model server, queried before the push.

TFX's InfraValidator starts TF Serving in Docker or Kubernetes. This one starts the product's
own model server (``python -m serving``, what ``pipeline_runner.py serve`` runs) in a
subprocess, and TF Serving's ``tensorflow_model_server`` too when it is on PATH
(``require_tf_serving`` makes that binary a must). For each server:

1. the candidate is laid out as a one-version model base path (``<tmp>/<name>/1``, a symlink
   to the model) and the server is started on free loopback ports;
2. it must report the version AVAILABLE within ``load_timeout_seconds`` (a server that exits,
   or reports the load failed, is refused at once, with its last output lines);
3. ``num_examples`` examples of the eval split are sent to every signature of the model, over
   REST (TF Serving's columnar ``inputs`` format) and over gRPC (``PredictionService/Predict``);
4. every answer must be well formed (each output the signature declares, with the rows and
   shape of the request) and equal the prediction of the same SavedModel called in this
   process, within ``rtol=1e-5, atol=1e-6`` (the servers run the same TensorFlow graph; the
   bound only absorbs batching and JSON's decimal round trip). Strings must be equal.

Signatures that take serialized ``tf.Example``s get the examples as they are. Signatures that
take one tensor per feature (``serving_json``) get each example's values, with ``""`` or 0
where the example has none: any valid input serves a comparison of two servers of one model.

The result is TFX's ``InfraBlessing`` (custom property ``blessed``, files ``INFRA_BLESSED`` /
``INFRA_NOT_BLESSED``), which TFX's Pusher checks (``CheckBlessing``), plus ``reason`` (why
not, in one line) and ``validation.json`` (each server, transport and signature checked). Every
server started is stopped on the way out, also on failure, on Ctrl-C and on SIGTERM (when the
executor runs in the main thread). A model the Evaluator did not bless is not served at all.
"""
import base64
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.util import model_utils
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from components.example_inputs import read_examples, signature_inputs
from components.signatures import load_saved_model

BLESSED_KEY = 'blessed'
REASON_KEY = 'reason'
BLESSED_FILE, NOT_BLESSED_FILE = 'INFRA_BLESSED', 'INFRA_NOT_BLESSED'
REPORT_FILE = 'validation.json'
TF_SERVING_BINARY = 'tensorflow_model_server'
TOLERANCE = {'rtol': 1e-5, 'atol': 1e-6}
VERSION = 1
STOP_SECONDS = 10.0
NOT_EVALUATED = 'the Evaluator did not bless the model'
_LISTENING = re.compile(r'(REST|gRPC) listening on (?:http://)?(\S+)')


class NotServable(Exception):
    """The candidate failed infra validation; the message says why, in one line."""


def predict_in_process(loaded, requests: Dict[str, Dict[str, np.ndarray]]):
    """{signature: {output: array}}, from the SavedModel loaded in this process."""
    expected = {}
    for name, inputs in requests.items():
        try:
            outputs = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
        except Exception as e:  # noqa: BLE001 - any failure refuses the model, with its reason
            raise NotServable(f'signature {name} fails when called in process: '
                              f'{type(e).__name__}: {_first_line(e)}') from None
        expected[name] = {k: v.numpy() for k, v in outputs.items()}
    return expected


def _first_line(error: Exception) -> str:
    lines = [ln.strip() for ln in str(getattr(error, 'message', error)).splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith(('[[', 'File ', 'Detected at node', 'Graph execution error')):
            return line[:300]
    return lines[-1][:300] if lines else ''


def compare(where: str, got: Dict[str, Any], want: Dict[str, np.ndarray]) -> None:
    """Raises NotServable unless ``got`` has every output of ``want``, shaped alike and equal
    within TOLERANCE (strings exactly)."""
    if set(got) != set(want):
        raise NotServable(f'{where}: answered outputs {sorted(got)}, expected {sorted(want)}')
    for key, expected in want.items():
        value = got[key]
        if expected.dtype == object:
            value = np.array([v.encode() if isinstance(v, str) else v
                              for v in np.asarray(value, dtype=object).reshape(-1)],
                             dtype=object).reshape(np.shape(value))
        else:
            try:
                value = np.asarray(value, dtype=expected.dtype)
            except (TypeError, ValueError):
                raise NotServable(f'{where}: output {key} is not numeric: '
                                  f'{str(got[key])[:100]}') from None
        if value.shape != expected.shape:
            raise NotServable(f'{where}: output {key} has shape {list(value.shape)}, expected '
                              f'{list(expected.shape)}')
        if expected.dtype == object:
            same = value == expected
        elif np.issubdtype(expected.dtype, np.floating):
            same = np.isclose(value, expected, equal_nan=True, **TOLERANCE)
        else:
            same = value == expected
        if not np.all(same):
            index = tuple(np.argwhere(~np.asarray(same))[0])
            raise NotServable(f'{where}: output {key}{list(index)} is {value[index]!r}, the '
                              f'model in process gives {expected[index]!r}')


def _b64(value: bytes):
    return {'b64': base64.b64encode(value).decode('ascii')}


def _json_value(value):
    if isinstance(value, bytes):
        try:
            return value.decode('utf-8')
        except UnicodeDecodeError:
            return _b64(value)
    return value.item() if isinstance(value, np.generic) else value


def rest_predict(url: str, model_name: str, signature: str, inputs: Dict[str, np.ndarray],
                 timeout: float) -> Dict[str, Any]:
    """TF Serving's REST predict, columnar: {"inputs": {...}} -> {"outputs": ...}."""
    columns = {}
    for name, array in inputs.items():
        examples = len(inputs) == 1 and array.dtype == object  # serialized tf.Examples
        columns[name] = [_b64(v) if examples else _json_value(v) for v in array.tolist()]
    body = json.dumps({'signature_name': signature, 'inputs': columns}).encode()
    request = urllib.request.Request(f'{url}/v1/models/{model_name}:predict', data=body,
                                     headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise NotServable(f'REST {signature}: HTTP {e.code}: '
                          f'{e.read().decode("utf-8", "replace")[:300]}') from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise NotServable(f'REST {signature}: no valid answer: {e}') from None
    if not isinstance(answer, dict) or 'outputs' not in answer:
        raise NotServable(f'REST {signature}: the answer has no "outputs": {str(answer)[:200]}')
    outputs = answer['outputs']
    if not isinstance(outputs, dict):  # one output is sent bare
        return {'': outputs}
    return outputs


def grpc_predict(channel, model_name: str, signature: str, inputs: Dict[str, np.ndarray],
                 timeout: float) -> Dict[str, np.ndarray]:
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for name, array in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(
            array.tolist() if array.dtype == object else array))
    try:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=timeout)
    except grpc.RpcError as e:
        raise NotServable(f'gRPC {signature}: {e.code().name}: {e.details()}') from None
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class ServerProcess:
    """A model server in a subprocess (its own process group), stopped on exit however the
    block ends. ``rest_url`` and ``grpc_target`` are known once ``wait_until_available``
    returns."""

    def __init__(self, label: str, command: List[str], rest_url: str = '',
                 grpc_target: str = ''):
        self.label, self.command = label, command
        self.rest_url, self.grpc_target = rest_url, grpc_target
        self.output = collections.deque(maxlen=40)
        self.process: Optional[subprocess.Popen] = None

    def __enter__(self) -> 'ServerProcess':
        logging.info('Starting %s: %s', self.label, ' '.join(self.command))
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for raw in self.process.stdout:
            line = raw.decode('utf-8', 'replace').rstrip()
            self.output.append(line)
            match = _LISTENING.search(line)
            if match and match.group(1) == 'REST':
                self.rest_url = self.rest_url or f'http://{match.group(2)}'
            elif match:
                self.grpc_target = self.grpc_target or match.group(2)

    def tail(self, lines: int = 5) -> str:
        return ' | '.join(list(self.output)[-lines:]) or '(no output)'

    def wait_until_available(self, model_name: str, deadline: float) -> None:
        """Polls the version's status over REST until it is AVAILABLE."""
        while True:
            code = self.process.poll()
            if code is not None:
                raise NotServable(f'{self.label} exited with status {code} before the model '
                                  f'loaded: {self.tail()}')
            if self.rest_url and self.grpc_target:
                status = self._status(model_name)
                if status.get('state') == 'AVAILABLE':
                    return
                error = (status.get('status') or {}).get('error_message')
                if status.get('state') == 'END' and error:
                    raise NotServable(f'{self.label} could not load the model: {error}')
            if time.time() > deadline:
                raise NotServable(f'{self.label} did not have the model AVAILABLE within the '
                                  f'load timeout (validation.infra.load_timeout_seconds): '
                                  f'{self.tail()}')
            time.sleep(0.1)

    def _status(self, model_name: str) -> Dict[str, Any]:
        url = f'{self.rest_url}/v1/models/{model_name}/versions/{VERSION}'
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                statuses = json.loads(response.read()).get('model_version_status', [])
        except (urllib.error.URLError, OSError, ValueError):
            return {}  # not listening yet, or no such version yet (404)
        return statuses[0] if statuses else {}

    def __exit__(self, *exc) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, STOP_SECONDS)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def our_server(base_path: str, model_name: str) -> ServerProcess:
    return ServerProcess('the model server (python -m serving)', [
        sys.executable, '-m', 'serving', '--serving-dir', base_path, '--model-name', model_name,
        '--host', '127.0.0.1', '--rest-port', '0', '--grpc-port', '0'])


def tf_serving(binary: str, base_path: str, model_name: str) -> ServerProcess:
    rest, grpc_port = free_port(), free_port()
    return ServerProcess(f'TF Serving ({binary})', [
        binary, f'--port={grpc_port}', f'--rest_api_port={rest}', '--rest_api_timeout_in_ms=30000',
        f'--model_name={model_name}', f'--model_base_path={base_path}'],
        rest_url=f'http://127.0.0.1:{rest}', grpc_target=f'127.0.0.1:{grpc_port}')


def validate_server(server: ServerProcess, model_name: str, deadline: float,
                    requests: Dict[str, Dict[str, np.ndarray]],
                    expected: Dict[str, Dict[str, np.ndarray]]) -> List[Dict[str, Any]]:
    """Waits for the load, then checks every signature over both transports."""
    import grpc

    started = time.time()
    server.wait_until_available(model_name, deadline)
    checks = [{'check': 'load', 'seconds': round(time.time() - started, 2)}]
    timeout = max(5.0, deadline - time.time())
    with grpc.insecure_channel(server.grpc_target) as channel:
        for signature, inputs in requests.items():
            want = expected[signature]
            got = rest_predict(server.rest_url, model_name, signature, inputs, timeout)
            if set(got) == {''} and len(want) == 1:
                got = {next(iter(want)): got['']}
            compare(f'{server.label}, REST {signature}', got, want)
            compare(f'{server.label}, gRPC {signature}',
                    grpc_predict(channel, model_name, signature, inputs, timeout), want)
            rows = len(next(iter(inputs.values())))
            checks += [{'check': f'{transport} {signature}', 'rows': rows, 'ok': True}
                       for transport in ('REST', 'gRPC')]
    return checks


@contextlib.contextmanager
def sigterm_raises():
    """SIGTERM raises SystemExit in the main thread, so the servers are stopped on the way
    out; elsewhere (Beam worker threads) the signal cannot be caught."""
    def handler(signum, frame):
        raise SystemExit(f'InfraValidator: got signal {signum}')
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def base_path_for(model_path: str, directory: str, model_name: str) -> str:
    """``<directory>/<model_name>/1``, the model in TF Serving's layout: a symlink where the
    filesystem allows, else a copy."""
    base = os.path.join(directory, model_name)
    os.makedirs(base)
    version = os.path.join(base, str(VERSION))
    try:
        if '://' in model_path:
            raise OSError('remote model')
        os.symlink(os.path.abspath(model_path), version)
    except OSError:
        io_utils.copy_dir(model_path, version)
    return base


def validate(model_path: str, examples: List[bytes], model_name: str,
             load_timeout_seconds: float, require_tf_serving: bool) -> Dict[str, Any]:
    """Every check on every server; raises NotServable at the first failure."""
    binary = shutil.which(TF_SERVING_BINARY)
    if require_tf_serving and not binary:
        raise NotServable(f'{TF_SERVING_BINARY} is not on PATH, and '
                          'validation.infra.require_tf_serving is true')
    loaded = load_saved_model(model_path)
    names = sorted(loaded.signatures)
    if not names:
        raise NotServable('the model has no serving signatures')
    requests = {name: signature_inputs(loaded.signatures[name], examples) for name in names}
    expected = predict_in_process(loaded, requests)
    report = {'signatures': names, 'examples': len(examples), 'servers': {},
              'tf_serving': binary or f'{TF_SERVING_BINARY} not on PATH: not checked'}
    with tempfile.TemporaryDirectory(prefix='infra-validation-') as tmp:
        base = base_path_for(model_path, tmp, model_name)
        servers = [our_server] + ([lambda b, n: tf_serving(binary, b, n)] if binary else [])
        for make in servers:
            with make(base, model_name) as server:
                deadline = time.time() + load_timeout_seconds
                report['servers'][server.label] = validate_server(
                    server, model_name, deadline, requests, expected)
    return report


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        blessing = artifact_utils.get_single_instance(output_dict['blessing'])
        model = artifact_utils.get_single_instance(input_dict['model'])
        model_blessing = input_dict.get('model_blessing')
        started = time.time()
        report: Dict[str, Any] = {}
        try:
            if model_blessing and not model_utils.is_model_blessed(model_blessing[0]):
                raise NotServable(NOT_EVALUATED)
            examples = read_examples(artifact_utils.get_single_instance(input_dict['examples']),
                                     int(exec_properties['num_examples']))
            if not examples:
                raise NotServable('the eval split holds no examples to send')
            with sigterm_raises():
                report = validate(
                    path_utils.serving_model_path(model.uri,
                                                  path_utils.is_old_model_artifact(model)),
                    examples,
                    exec_properties['model_name'],
                    float(exec_properties['load_timeout_seconds']),
                    bool(exec_properties['require_tf_serving']))
            reason = ''
        except NotServable as e:
            reason = str(e)
        report.update(blessed=not reason, reason=reason, seconds=round(time.time() - started, 1))
        io_utils.write_string_file(os.path.join(blessing.uri, REPORT_FILE),
                                   json.dumps(report, indent=2, default=str))
        io_utils.write_string_file(
            os.path.join(blessing.uri, NOT_BLESSED_FILE if reason else BLESSED_FILE), '')
        blessing.set_int_custom_property(BLESSED_KEY, 0 if reason else 1)
        blessing.set_string_custom_property(REASON_KEY, reason)
        if reason:
            logging.warning('Infra validation failed: %s', reason)
        else:
            logging.info('Infra validation passed in %.1f s', time.time() - started)


def read_blessing(artifact: types.Artifact) -> Dict[str, Any]:
    """What the summary shows of an InfraBlessing: blessed, reason, and the checks made."""
    path = os.path.join(artifact.uri, REPORT_FILE)
    report = {}
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            report = json.load(f)
    reason = artifact.get_string_custom_property(REASON_KEY) or None
    return {'blessed': bool(artifact.get_int_custom_property(BLESSED_KEY)), 'reason': reason,
            'skipped': reason if reason == NOT_EVALUATED else None,
            'artifact': artifact.uri, 'servers': sorted(report.get('servers', {})),
            'signatures': report.get('signatures', []), 'examples': report.get('examples'),
            'tf_serving': report.get('tf_serving'), 'seconds': report.get('seconds')}
