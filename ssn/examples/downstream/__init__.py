"""The downstream example: SSN inside a net that classifies every pixel.

* :mod:`~ssn.examples.downstream.net`: the nets (superpixel pooling of CNN features).
* :mod:`~ssn.examples.downstream.labels`: the task, each pixel's segment lightness class.
* :mod:`~ssn.examples.downstream.evaluation`: held-out accuracy (``ssn-eval-task``).
"""
