"""Worked examples built on the library, kept apart from it.

* :mod:`ssn.examples.downstream`: SSN inside a downstream net, trained end to
  end on a per-pixel task (``ssn-make-prototxt --net downstream``, ``ssn-eval-task``).
* :mod:`ssn.examples.synthflow`: a synthetic optical-flow data set made from
  BSDS500 segmentations (``ssn-synthflow``), for training on continuous targets.
* :mod:`ssn.examples.gpu_runs`: run folders for training SSN variants with
  ``caffe train`` on a GPU machine (``tools/gpu_train.sh``).

Nothing in the library imports these modules; their old homes
(``ssn.nets.downstream``, ``ssn.training.task_labels``, ``ssn.evaluation.task``,
``ssn.synthflow``, ``ssn.training.gpu_runs``) still import, as the same modules.
"""
