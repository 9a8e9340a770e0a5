from components.fast_statistics_gen.component import FastStatisticsGen  # noqa: F401
