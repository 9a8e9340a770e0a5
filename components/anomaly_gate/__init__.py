"""AnomalyGate: stops the pipeline before Transform when ExampleValidator found anomalies."""
from components.anomaly_gate.component import AnomalyGate  # noqa: F401
from components.anomaly_gate.executor import AnomaliesFound, read_anomalies  # noqa: F401
