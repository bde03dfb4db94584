# Two entry points for a fresh machine: `make demo` and `make test`.
# Each sets itself up (venv, dependencies, engine build into the user cache,
# default model) and is idempotent.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup engine model browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,humaneval,ray]'
	touch $@

engine: setup
	$(BIN)/specsweep engine install

model: setup
	$(BIN)/specsweep models fetch

# Headless Chromium for the HTML-report test (Debian's package; installed when we are root).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
		echo "chromium not installed: the HTML screenshot test will be skipped"

demo: engine model
	$(BIN)/specsweep demo

# Two pytest-xdist workers (pyproject.toml addopts).
test: engine model browser
	$(BIN)/python -m pytest -q --durations=15

clean:
	rm -rf $(VENV) build src/*.egg-info
