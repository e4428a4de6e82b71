"""The runtimes' names, in a module without torch: the CLI's parser offers them."""

RUNTIMES = ("float32", "bf16", "onnx", "int8")
RUNTIME_CHOICES = ("auto", *RUNTIMES)
