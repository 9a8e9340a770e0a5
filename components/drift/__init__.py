"""DriftCheck: the newest span's statistics against the previous span's (TFDV comparators)."""
from components.drift.component import DriftCheck  # noqa: F401
from components.drift.executor import drift_anomalies, serving_anomalies, set_comparators  # noqa: F401
