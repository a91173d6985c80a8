"""The Tracr study (protocol §2): fine-tuning the compiled Counter and Max-identifier, analysing every run
against its exact starting point, and reverse fine-tuning Counter back to count a.

``config`` (what runs, ``PRESETS``) → ``jobs`` (the sweep, ``run_study``) → ``results`` (``results.json``)
with ``findings`` (claim checks) → ``report`` (``report.html``); ``cli`` is ``ftmech reproduce tracr`` and
``ftmech tracr compile|finetune|analyse``.
"""
