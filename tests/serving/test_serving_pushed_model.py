"""The server on the model the end-to-end pipeline really pushed (conftest.taxi_e2e)."""
from serving_testlib import check_served_model


def test_the_pipelines_pushed_taxi_model_is_served(serve, taxi_e2e):
    config = taxi_e2e['config']
    check_served_model(serve(config.paths.serving_dir, model_name=config.name))
