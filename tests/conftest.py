# pytester drives the inner pytest runs of tests/plugin/ (a root conftest, because
# pytest accepts `pytest_plugins` only there).
pytest_plugins = ["pytester"]
