"""A trained classifier at work: evaluate, predict (chunked, sharded), ONNX export and the engines under them."""
