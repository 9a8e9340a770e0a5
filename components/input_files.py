"""The input files' fingerprints, recorded by the preflight and checked again by the gate.

No TFX imports: the preflight uses these before anything heavy is loaded.
"""
import os
from typing import Dict, List


def fingerprint(paths: List[str]) -> Dict[str, List[int]]:
    """{path: [size, mtime in ns]} — enough to notice a file rewritten during a run."""
    result = {}
    for path in paths:
        st = os.stat(path)
        result[path] = [st.st_size, st.st_mtime_ns]
    return result


def changed_files(recorded: Dict[str, List[int]]) -> List[str]:
    """Lines naming each recorded file that is now gone or different."""
    lines = []
    for path, (size, mtime) in sorted(recorded.items()):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            lines.append(f'{path}: removed')
            continue
        if [st.st_size, st.st_mtime_ns] != [size, mtime]:
            lines.append(f'{path}: was {size} bytes (modified {mtime} ns), '
                         f'now {st.st_size} bytes (modified {st.st_mtime_ns} ns)')
    return lines
