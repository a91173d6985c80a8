"""The TinyStories study (Jain et al. 2023, protocol §7): deletion of a story feature by fine-tuning and its
recovery, at CPU scale (``--preset cpu``) or the study's sizes (``--preset gpu``).

``config`` (settings and presets) -> ``jobs`` (the plan of content-addressed jobs) -> ``run`` (runs a sweep) ->
``results`` (results.json) -> ``findings`` (the study's claims) -> ``report`` (report.html); ``cli`` holds
``ftmech reproduce tinystories`` and ``ftmech tinystories ...``.
"""
