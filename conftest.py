# The conformance suite is a pytest plugin (normconf.plugin): cases/*.yaml x adapters become test items.
# It registers itself through the pytest11 entry point of the installed normconf (./setup.sh installs
# it editable), so nothing loads it here; this file marks the repository root for pytest.
