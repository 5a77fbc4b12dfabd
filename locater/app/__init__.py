"""The browser app (``locater-app``, ``tools/app.py``; docs/app.md): a thin layer over
:class:`~locater.inference.VideoSegmenter`.

- :mod:`locater.app.session`: the work, testable without a browser (input checks, one segmenter pass into an
  overlay video and a masks zip, webcam frames pushed into the live mode);
- :mod:`locater.app.examples`: the example videos, generated from the synthetic benchmark on first use;
- :mod:`locater.app.ui`: the Gradio page. Only this module imports Gradio (the ``app`` extra:
  ``pip install -e '.[app]'``), so ``import locater`` and ``import locater.app`` never need it.
"""
