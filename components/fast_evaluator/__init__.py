from components.fast_evaluator.component import FastEvaluator  # noqa: F401
