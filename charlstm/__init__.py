"""charlstm: character-level LSTM language models on Keras 3.

The data flows one way:
text -> tokenizer -> TBPTT batches -> model -> checkpoint -> sampler -> text.
Importing this package stays cheap: TensorFlow loads only with the modules that need it.
"""

__version__ = "0.1.0"
