"""The baseline the Evaluator compares a candidate with: the model in production before it.

TFX's ``LatestBlessedModelStrategy`` picks the latest blessed model, which after a run is
the candidate itself, so an unchanged rerun would evaluate the model against itself and
push it again. This strategy picks the latest model that was blessed *before the candidate
existed* (MLMD artifact ids only grow), and never the candidate. An unchanged rerun then
resolves the same baseline as the run before it, and the Evaluator and Pusher come from the
cache.
"""
from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.components.common import resolver

BLESSED = 'blessed'
CURRENT_MODEL_ID = 'current_model_id'


class BaselineModelStrategy(resolver.ResolverStrategy):
    """Inputs: ``model`` (all models), ``model_blessing`` (all blessings), ``candidate``."""

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        candidates = input_dict['candidate']
        if not candidates:
            return None
        # The newest model: the local runner passes this run's only, Airflow's (legacy)
        # resolver driver every model the Trainer ever made.
        candidate = max(candidates, key=lambda a: a.id)
        blessings = {b.get_int_custom_property(CURRENT_MODEL_ID): b
                     for b in input_dict['model_blessing']
                     if b.get_int_custom_property(BLESSED) == 1 and b.id < candidate.id}
        result = {'model': [], 'model_blessing': [], 'candidate': [candidate]}
        for model in sorted(input_dict['model'], key=lambda m: m.id, reverse=True):
            if model.id != candidate.id and model.id in blessings:
                result['model'] = [model]
                result['model_blessing'] = [blessings[model.id]]
                break
        return result
