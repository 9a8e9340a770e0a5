"""Opening a page in a real headless Chromium, driven over the DevTools protocol.

Debian's ``chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it), started
with a fresh profile and everything that phones home switched off, and driven with
``websocket-client`` (no browser download, no Playwright). ``open_page`` loads a file,
waits until the page says it is done (``document.body.dataset.ready``), and returns what a
test asserts on: console errors, uncaught exceptions, every request that was not for the
file itself, values read from the DOM, and a full-page screenshot.
"""
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser') or '/usr/bin/chromium'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run',
         '--disable-default-apps', '--disable-extensions', '--mute-audio',
         '--remote-debugging-port=0', '--window-size=1280,900']


def available() -> bool:
    return os.path.exists(CHROMIUM)


class Page:
    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: List[Dict[str, Any]] = []

    def call(self, method: str, timeout: float = 30, **params) -> Dict[str, Any]:
        call_id = next(self.ids)
        self.ws.send(json.dumps({'id': call_id, 'method': method, 'params': params}))
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.time()))
            message = json.loads(self.ws.recv())
            if message.get('id') == call_id:
                if 'error' in message:
                    raise RuntimeError(f'{method}: {message["error"]}')
                return message.get('result', {})
            if 'method' in message:
                self.events.append(message)
        raise TimeoutError(method)

    def evaluate(self, expression: str) -> Any:
        result = self.call('Runtime.evaluate', expression=expression, returnByValue=True,
                           awaitPromise=True)
        if 'exceptionDetails' in result:
            raise RuntimeError(f'{expression}: {result["exceptionDetails"]}')
        return result['result'].get('value')

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f'page never made {expression!r} true')


def _devtools_url(profile: str, proc: subprocess.Popen, timeout: float = 30) -> str:
    port_file = os.path.join(profile, 'DevToolsActivePort')
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            with open(os.path.join(profile, 'chromium.log')) as f:
                raise RuntimeError(f'chromium exited with {proc.returncode}: {f.read()[-2000:]}')
        if os.path.exists(port_file):
            with open(port_file) as f:
                lines = f.read().split()
            if len(lines) >= 2:
                return f'ws://127.0.0.1:{lines[0]}{lines[1]}'
        time.sleep(0.05)
    raise TimeoutError('chromium did not open its DevTools port')


def open_page(path: str, ready: str = 'document.body && document.body.dataset.ready',
              screenshot: Optional[str] = None, values: Optional[Dict[str, str]] = None,
              timeout: float = 90) -> Dict[str, Any]:
    """Loads ``path`` (a local file), waits for ``ready``, and returns
    {'console_errors', 'exceptions', 'requests', 'values', 'ready'}; ``values`` maps names
    to JavaScript expressions evaluated once the page is ready."""
    import websocket

    profile = tempfile.mkdtemp(prefix='chromium-profile-')
    # Its own log to a file (a pipe nobody reads could fill and stall it).
    log = open(os.path.join(profile, 'chromium.log'), 'w')
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f'--user-data-dir={profile}', 'about:blank'],
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        url = _devtools_url(profile, proc)
        browser = websocket.create_connection(url, timeout=30, suppress_origin=True)
        target = Page(browser).call('Target.createTarget', url='about:blank')['targetId']
        browser.close()
        page_ws = websocket.create_connection(
            url.rsplit('/devtools/', 1)[0] + f'/devtools/page/{target}', timeout=30,
            suppress_origin=True)
        page = Page(page_ws)
        for domain in ('Page', 'Runtime', 'Log', 'Network'):
            page.call(f'{domain}.enable')
        page.call('Page.navigate', url='file://' + os.path.abspath(path))
        state = page.wait_for(ready, timeout=timeout)
        time.sleep(0.3)  # late requests or errors, if any, arrive in this time
        page.evaluate('1')  # drains the events that came meanwhile
        out: Dict[str, Any] = {'ready': state, 'values': {}}
        for name, expression in (values or {}).items():
            out['values'][name] = page.evaluate(expression)
        if screenshot:
            size = page.call('Page.getLayoutMetrics')['cssContentSize']
            shot = page.call('Page.captureScreenshot', format='png', captureBeyondViewport=True,
                             clip={'x': 0, 'y': 0, 'width': size['width'],
                                   'height': min(size['height'], 16000), 'scale': 1})
            with open(screenshot, 'wb') as f:
                f.write(base64.b64decode(shot['data']))
        page_url = 'file://' + os.path.abspath(path)
        events = page.events
        out['console_errors'] = [
            ' '.join(str(a.get('value', a.get('description', ''))) for a in e['params']['args'])
            for e in events if e['method'] == 'Runtime.consoleAPICalled'
            and e['params']['type'] in ('error', 'assert')] + [
            e['params']['entry']['text'] for e in events if e['method'] == 'Log.entryAdded'
            and e['params']['entry']['level'] == 'error']
        out['exceptions'] = [e['params']['exceptionDetails'] for e in events
                             if e['method'] == 'Runtime.exceptionThrown']
        out['requests'] = [e['params']['request']['url'] for e in events
                           if e['method'] == 'Network.requestWillBeSent'
                           and e['params']['request']['url'] != page_url]
        page_ws.close()
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(profile, ignore_errors=True)
