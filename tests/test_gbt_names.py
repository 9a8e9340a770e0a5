"""The gbt trainer's feature names: TF-DF refuses some that CSVs have ('Body Mass (g)',
'Date Egg', 'Delta 15 N (o/oo)'), so the trees see them renamed (components/gbt_trainer.py).
Real TF-DF on a tiny in-memory data set; no pipeline run."""
import numpy as np
import pytest
import tensorflow as tf

from components import gbt_trainer
from components.features import FeaturePlan
from pipeline.config import TrainingConfig

# Transformed names as the TFT graph gives them, one of each character TF-DF refuses.
NAMES = ('Body Mass (g)_xf', 'Date Egg_xf', 'Clutch?_xf', 'share %_xf', 'a,b_xf', 'plain_xf')


def features(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = {name: rng.normal(size=n).astype(np.float32) for name in NAMES[:-1]}
    x['plain_xf'] = rng.integers(0, 3, size=n).astype(np.int64)
    y = (x['Body Mass (g)_xf'] + x['share %_xf'] > 0).astype(np.int64)
    return x, y


def model_for(inputs):
    plan = FeaturePlan(features=(), label='y', label_dtype='int', task='binary')
    training = TrainingConfig(gbt_num_trees=10, gbt_max_depth=3, seed=0)
    return gbt_trainer.build_gbt_model(plan, inputs, training)


def semantics():
    return {n: (gbt_trainer.tfdf.keras.FeatureSemantic.CATEGORICAL if n == 'plain_xf'
                else gbt_trainer.tfdf.keras.FeatureSemantic.NUMERICAL) for n in NAMES}


def test_names_tf_df_refuses_are_renamed_and_the_trees_train_and_predict_on_them():
    names = gbt_trainer.tree_names(semantics())
    assert names == {'Body Mass (g)_xf': 'Body_Mass__g__xf', 'Date Egg_xf': 'Date_Egg_xf',
                     'Clutch?_xf': 'Clutch__xf', 'share %_xf': 'share___xf', 'a,b_xf': 'a_b_xf'}
    x, y = features()
    # What the exported signatures apply to the TFT graph's output: the same renaming.
    transform = gbt_trainer.renamed(lambda raw: raw, names)
    renamed = transform(x)
    model = model_for({names.get(n, n): s for n, s in semantics().items()})
    model.fit(tf.data.Dataset.from_tensor_slices((renamed, y)).batch(64), verbose=0)
    p = model.predict(tf.data.Dataset.from_tensor_slices(renamed).batch(64), verbose=0)
    assert np.mean((p.reshape(-1) > 0.5) == y) > 0.8


def test_without_the_renaming_tf_df_refuses_the_names():
    """The reason for the renaming: TF-DF's own refusal of the names as they are."""
    x, y = features()
    model = model_for(semantics())
    with pytest.raises(Exception, match='Body Mass'):
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(64), verbose=0)
