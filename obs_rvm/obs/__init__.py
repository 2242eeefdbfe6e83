"""Everything that touches OBS Studio: libobs bindings, the "AI Background" filter, its properties.

Only `libobs`, `frames`, `properties` and `filter` need a running OBS; `settings`, `worker` and `stats` are plain
Python so they can be tested without one. Nothing here is imported by the CLI.
"""
