"""Digests of code: of a module with the project modules it imports, and of a source tree.

``module_digests(files)`` is what the cache keys use (``pipeline/pipeline.py``): a
component's key holds the digest of the code its executor runs, so an edit re-runs the
components that run the edited file, and only those. The closure of a module is found by
the standard library's ``modulefinder`` with its search path limited to this repository
(and, for a custom module file, that file's directory): it reads each file's imports
without executing anything, follows those it finds there, parent packages' ``__init__``
included (importing ``components.drift.executor`` runs ``components/drift/__init__.py``),
and leaves third-party and standard-library modules out (their versions are the lock
file's business). One search over every module of ``components/`` gives them all (~0.05 s;
``_Finder`` remembers which module imports which). A module imported only inside a function is found too; one imported by
a name computed at run time (``importlib.import_module(name)``) is not.

No TensorFlow, no TFX: this runs while a run's inputs are resolved, before anything heavy
is imported.
"""
import collections
import hashlib
import json
import modulefinder
import os
from typing import Dict, Iterable, Iterator, List, Set

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The packages whose code runs inside components (the executors, Transform's and the
# Trainer's modules, the Evaluator's metrics).
COMPONENT_PACKAGES = ('components',)


def _combine(entries: Iterable[List[str]]) -> str:
    h = hashlib.sha256()
    for entry in sorted(entries):
        h.update(json.dumps(entry).encode())
    return h.hexdigest()


def _file_sha(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


class _Finder(modulefinder.ModuleFinder):
    """``modulefinder``'s search, remembering which module imports which, so that one
    search of every module gives each one's closure."""

    def __init__(self, path: List[str]):
        super().__init__(path=path)
        self.imports: Dict[str, Set[str]] = collections.defaultdict(set)
        self._scanning: List[str] = []

    def scan_code(self, co, m):
        self._scanning.append(m.__name__)
        try:
            super().scan_code(co, m)
        finally:
            self._scanning.pop()

    def import_module(self, partname, fqname, parent):
        m = super().import_module(partname, fqname, parent)
        if m is not None and self._scanning:
            self.imports[self._scanning[-1]].add(fqname)
        return m

    def ensure_fromlist(self, m, fromlist, recursive=0):
        # ``from package import module``: modulefinder skips a submodule it loaded before
        # (it is an attribute of the package by then), so it is recorded here.
        super().ensure_fromlist(m, fromlist, recursive)
        for sub in fromlist:
            name = f'{m.__name__}.{sub}'
            if name in self.modules and self._scanning:
                self.imports[self._scanning[-1]].add(name)

    def digest(self, name: str, roots: List[str]) -> str:
        """The digest of module ``name``'s file, its parent packages' and those of every
        module it imports, transitively, that lie under ``roots``."""
        parts = name.split('.')
        todo = ['.'.join(parts[:i]) for i in range(1, len(parts) + 1)]
        seen: Set[str] = set()
        entries = []
        while todo:
            current = todo.pop()
            if current in seen or current not in self.modules:
                continue
            seen.add(current)
            todo.extend(self.imports.get(current, ()))
            path = self.modules[current].__file__
            path = path and os.path.abspath(path)
            root = next((r for r in roots if path and path.startswith(r + os.sep)), None)
            if root is not None:
                entries.append([os.path.relpath(path, root), _file_sha(path)])
        return _combine(entries)


def module_digests_of(names: Iterable[str], repo: str = REPO) -> Dict[str, str]:
    """{name: digest of the module and of every project module it imports, transitively}."""
    finder = _Finder(path=[repo])
    names = list(names)
    for name in names:
        finder.import_hook(name)
    return {name: finder.digest(name, [repo]) for name in names}


def file_digest(path: str, repo: str = REPO) -> str:
    """The digest of a module file (a custom ``modules.transform`` or ``modules.trainer``)
    and of what it imports from its own directory and from the repository."""
    directory = os.path.dirname(os.path.abspath(path))
    finder = _Finder(path=[directory, repo])
    finder.run_script(path)
    return finder.digest('__main__', [directory, repo])


def project_modules(repo: str = REPO, packages=COMPONENT_PACKAGES) -> Iterator[str]:
    """The dotted names of every module in ``packages`` (``components.drift.executor``...)."""
    for package in packages:
        for path in _files(os.path.join(repo, package), '.py'):
            relative = os.path.relpath(path, repo)[:-3].split(os.sep)
            if relative[-1] == '__init__':
                relative = relative[:-1]
            yield '.'.join(relative)


def module_digests(files: Iterable[str] = (), repo: str = REPO) -> Dict[str, str]:
    """{module name: digest} for every module of the component packages, and {path: digest}
    for each module file in ``files``."""
    digests = module_digests_of(project_modules(repo), repo)
    digests.update({path: file_digest(path, repo) for path in files if path})
    return digests


def combined(digests: Iterable[str]) -> str:
    """One digest of several (a component that runs more than one module)."""
    return _combine([[d] for d in digests])


def _files(root: str, suffix: str = '') -> Iterator[str]:
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.') and d != '__pycache__')
        for name in sorted(names):
            if name.endswith(suffix):
                yield os.path.join(directory, name)


def tree_digest(root: str) -> str:
    """sha256 over the relative path and bytes of every ``.py`` file under ``root``."""
    return _combine([[os.path.relpath(p, root), _file_sha(p)] for p in _files(root, '.py')])
