# Two commands on a fresh machine: `make demo` and `make test`. Each creates the virtual
# environment and installs what it needs on its own.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMPS := /usr/share/tuxpaint/stamps
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps test demo bench clean

install: $(VENV)/.installed

# torch is pinned to the build that pip resolves from local disk; nothing may pull another.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,ray,multilingual]'
	touch $@

# Debian packages the tests use: real captioned images, and a browser for the web UI tests.
system-deps:
	@if [ ! -d $(STAMPS) ] || ! command -v chromium >/dev/null; then \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q tuxpaint-stamps-default chromium; \
	fi

test: install system-deps
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

demo: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/imgsearch demo

bench: install
	$(VENV)/bin/imgsearch bench indexing --json
	$(VENV)/bin/imgsearch bench search --json
	$(VENV)/bin/imgsearch bench query --json

clean:
	rm -rf $(VENV) indexes/*.db* indexes/*.faiss reports
