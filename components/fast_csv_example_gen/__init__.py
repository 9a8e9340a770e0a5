from components.fast_csv_example_gen.component import FastCsvExampleGen  # noqa: F401
