# The two commands of the README: `make demo` (install + main job) and `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install chromium demo test lint bench clean constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(VENV)/.installed
$(VENV)/.installed: $(BIN)/python pyproject.toml clients/python/pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[ml,stack,dev]'
# the thin REST client (its own package: httpx + pydantic), which `smoothguard audit` and the demo use
	$(BIN)/pip install -q -e clients/python
	touch $@

# headless Chromium for the HTML report test only (Debian package; playwright never downloads browsers
# here): `make test` installs it, `make demo` never needs it. apt-get waits up to 10 minutes for the
# dpkg lock held by another apt run instead of failing on it
chromium:
	command -v chromium >/dev/null || { SUDO=$$( [ $$(id -u) = 0 ] || echo sudo ); \
		$$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq && \
		$$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium; }

demo: install
	$(BIN)/smoothguard demo

test: install chromium
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: install
	$(BIN)/python bench/bench_cpu.py
	$(BIN)/python bench/bench_service.py

# the versions the Docker images install (deploy/constraints.txt), from this venv once the tests pass
constraints: install
	VENV=$(VENV) sh deploy/constraints.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
