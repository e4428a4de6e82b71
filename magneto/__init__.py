"""MAGNeto: Extractive Tags Summarization.

The library: vocabulary, data, augmentation, model, losses and metrics. It holds no web or
command-line code so that training, pre-training and serving can all build on it.
"""

__version__ = "0.1.0"
