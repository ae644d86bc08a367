# The conformance suite is a pytest plugin: cases/*.yaml x adapters become test items.
pytest_plugins = ["normconf.plugin"]
