"""``gatedrnn.convert``: weight converters to and from Keras and TensorFlow 1 (needs torch)."""
from .torch_engine.convert import (
    TF1_ORDER,
    from_keras_lstm,
    from_tf1_basic_lstm,
    load_layer,
    to_keras_lstm,
    to_tf1_basic_lstm,
)

__all__ = ["from_keras_lstm", "to_keras_lstm", "from_tf1_basic_lstm", "to_tf1_basic_lstm", "load_layer",
           "TF1_ORDER"]
