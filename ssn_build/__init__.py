"""The build tool: BVLC Caffe 1.0 with the SSN layers, installed into a virtual environment.

Run it from a checkout of this repository (``python -m ssn_build``); it reads the
checkout's ``caffe_layers/``, ``cuda/``, ``patches/caffe/`` and ``ssn/native/``.
It is not part of the installed ``ssn`` package, which only loads what this
tool installed (pycaffe, ``libcaffe.so``, ``libssn_native.so``).

Steps, each in its own module:

* :mod:`ssn_build.source`: download the pinned Caffe sdist and check its hash;
* :mod:`ssn_build.patches`: restore every file our patches touch from the
  sdist and apply ``patches/caffe/series`` in order;
* :mod:`ssn_build.splice`: copy our layers and proto fragment into the tree;
* :mod:`ssn_build.make`: ``Makefile.config`` and Caffe's Makefile;
* :mod:`ssn_build.install`: pycaffe, libcaffe and the tools into the venv;
* :mod:`ssn_build.native`: ``libssn_native.so`` (connected components);
* :mod:`ssn_build.cuda_check` and :mod:`ssn_build.gpu_pack`: CUDA checks.
"""
