"""The classifiers: Keras networks (``networks``), the interpretable feature baseline, training
and sealed configs (``training``), the multimodal AAMI models, the DS1 selection protocol, and
``catalog``, which loads any trained model by name. Learners call
``catalog.load_trained``; imports ``core`` and ``data``.
"""
