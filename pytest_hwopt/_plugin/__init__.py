"""The pytest glue (private): session state, options, collection, fixtures, verdicts, reporting.

``pytest_hwopt.plugin`` (the ``pytest11`` entry point) registers the objects defined here in
``pytest_configure``; each module is one concern and knows nothing of the others' internals.
"""
