"""What the notebooks use to look inside models, beside the training pipeline.

probe.py   gates, cell and hidden states per character; gradient norms through time
plots.py   learning curves, text heat maps, gate saturation, gradient norms
rnn.py     CharRNN: the model family with a plain tanh RNN cell, for comparison
tasks.py   a long-range bracket task and a small trainer for any CharModel
"""
