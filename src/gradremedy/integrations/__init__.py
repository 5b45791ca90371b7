"""Adapters that bring gradremedy's gradient methods into training frameworks people already use.

One module per framework, each importing its framework only when it is itself imported; nothing in
gradremedy's core imports them, and none of the frameworks is a dependency of gradremedy:

* ``gradremedy.integrations.torchjd``: every registry method as a ``torchjd.aggregation.Aggregator``;
* ``gradremedy.integrations.lightning``: manual optimisation through ``LightningModule.manual_backward``;
* ``gradremedy.integrations.speechbrain``: a ``Brain`` mixin whose ``fit_batch`` applies the engine;
* ``gradremedy.integrations.espnet``: model wrapper, ``Trainer`` and ``EnhS2TTask`` for ESPnet's CLI/YAML.

Install the frameworks with ``scripts/setup-integrations.sh`` (a separate ``.venv-integrations``);
``docs/integrations/`` has one page per framework.
"""
