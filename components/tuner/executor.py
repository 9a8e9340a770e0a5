"""The Tuner's executor: TFX's search, then results that every KerasTuner algorithm can write.

TFX 1.15's own executor writes its ``tuner_results`` by asking the oracle for its
``max_trials`` best trials, which Hyperband's oracle does not have (``None``): the search
runs, then the component crashes (tensorflow/tfx#7778). This executor runs the same search
(``tfx.components.tuner.executor.search``) and writes:

``best_hyperparameters/best_hyperparameters.txt``  KerasTuner's ``HyperParameters`` config of
    the best completed trial: what TFX's Trainer reads (``fn_args.hyperparameters``), and
    what ``tuning.reuse`` imports later;
``tuner_results/tuner_results.json``  TFX's format: the completed trials, best first, each
    ``{trial_id, score, <hyperparameter>: value}``;
``tuner_results/trials.json``  what the run summary shows: every trial in the order it ran
    (hyperparameters, status, objective, seconds, whether the time cap cut it short), the
    winner, and why the search stopped (``search.TimedSearch`` records the times).
"""
import json
import os
from typing import Any, Dict, List

from absl import logging
from tfx.components.tuner import executor as tfx_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

TRIALS_FILE = 'trials.json'
BEST_FILE = 'best_hyperparameters.txt'
RESULTS_FILE = 'tuner_results.json'


class NoTrialCompleted(RuntimeError):
    """The search ended without a completed trial: there are no hyperparameters to train with."""


class Executor(tfx_executor.Executor):

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        if tfx_executor.get_tune_args(exec_properties):
            raise ValueError("TuneArgs is not supported by this Tuner's Executor.")
        tuner = tfx_executor.search(input_dict, exec_properties, self._get_tmp_dir())
        write_results(tuner, output_dict)


def trial_records(tuner) -> List[Dict[str, Any]]:
    """Every trial the oracle started, in that order, with the times ``TimedSearch`` kept."""
    log = getattr(tuner, 'trial_log', {})
    records = []
    for trial_id in tuner.oracle.start_order:
        trial = tuner.oracle.trials[trial_id]
        values = dict(trial.hyperparameters.values)
        records.append({'trial_id': trial_id, 'status': str(trial.status),
                        'score': trial.score, 'values': values,
                        'seconds': log.get(trial_id, {}).get('seconds'),
                        'cut_by_time_cap': log.get(trial_id, {}).get('cut', False),
                        'message': trial.message or ''})
    return records


def write_results(tuner, output_dict) -> Dict[str, Any]:
    oracle = tuner.oracle
    records = trial_records(tuner)
    ranked = [t for t in oracle.get_best_trials(max(1, len(oracle.trials)))
              if t.status == 'COMPLETED' and t.score is not None]
    if not ranked:
        failures = '; '.join(f'trial {r["trial_id"]}: {r["status"]} {r["message"].strip()[-300:]}'
                             for r in records) or 'no trial started'
        raise NoTrialCompleted(
            f'tuning: no trial completed, so there are no hyperparameters to train with '
            f'({failures}). Raise tuning.max_minutes or lower tuning.train_steps if the '
            f'time cap stopped them; otherwise see the log')
    best = ranked[0]
    search = getattr(tuner, 'search_log', {})
    summary = {
        'algorithm': search.get('algorithm', type(tuner).__name__),
        'objective': oracle.objective.name, 'direction': oracle.objective.direction,
        'max_trials': search.get('max_trials', oracle.max_trials),
        'max_minutes': search.get('max_minutes'), 'seconds': search.get('seconds'),
        'stopped_by': search.get('stopped_by', ''),
        'best_trial': best.trial_id, 'best_score': best.score,
        'best_values': dict(best.hyperparameters.values), 'trials': records}

    def write(key: str, name: str, value) -> str:
        path = os.path.join(artifact_utils.get_single_uri(output_dict[key]), name)
        io_utils.write_string_file(path, json.dumps(value, indent=1, default=str))
        return path

    path = write(standard_component_specs.BEST_HYPERPARAMETERS_KEY, BEST_FILE,
                 best.hyperparameters.get_config())
    logging.info('Best hyperparameters (trial %s, %s %s): %s, written to %s', best.trial_id,
                 summary['objective'], best.score, best.hyperparameters.values, path)
    write(standard_component_specs.TUNER_RESULTS_KEY, RESULTS_FILE,
          [{'trial_id': t.trial_id, 'score': t.score, **t.hyperparameters.values} for t in ranked])
    write(standard_component_specs.TUNER_RESULTS_KEY, TRIALS_FILE, summary)
    return summary


def read_trials(tuner_results_uri: str) -> Dict[str, Any]:
    """The search's record (``trials.json``) in a ``tuner_results`` artifact."""
    with open(os.path.join(tuner_results_uri, TRIALS_FILE), encoding='utf-8') as f:
        return json.load(f)
