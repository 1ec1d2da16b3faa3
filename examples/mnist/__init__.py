"""The digit-recognition demo `aiges -mnist` writes into ./aiges_demo/mnist (this file excepted)."""
