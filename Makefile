# netsprint: `make lab` opens the workbook, `make test` runs every test. Both provision first
# (scripts/provision.sh: installs only what is missing, seconds when nothing is). docs/setup.md.

VENV     ?= .venv
LAB_IP   ?= 127.0.0.1
LAB_PORT ?= 8888
PYTEST_ARGS ?=
-include /etc/netsprint.mk  # the Vagrant VM keeps its venv outside the synced folder

export NETSPRINT_VENV := $(abspath $(VENV))
TOKEN := $(VENV)/jupyter-token

.PHONY: help lab test provision doctor release-check clean

help:
	@echo "make lab            install what is missing, open JupyterLab on notebooks/ (http://127.0.0.1:$(LAB_PORT))"
	@echo "make test           install what is missing, run the test suite (PYTEST_ARGS=... passes through)"
	@echo "make provision      only install (scripts/provision.sh)"
	@echo "make doctor         check this machine for every week's needs"
	@echo "make release-check  notebooks/ is what solutions/ generates"
	@echo "make clean          remove .venv and caches (never notebooks/)"

provision:
	@bash scripts/provision.sh

lab: provision
	@mkdir -p notebooks
	@test -s $(TOKEN) || (umask 077; $(VENV)/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))' >$(TOKEN))
	@echo "netsprint: JupyterLab at http://127.0.0.1:$(LAB_PORT)/lab?token=$$(cat $(TOKEN))  (Ctrl-C stops it)"
	@# PATH: so `netsprint ...` works as-is in JupyterLab terminals (they inherit the server's).
	@PATH="$(abspath $(VENV))/bin:$$PATH" JUPYTER_TOKEN="$$(cat $(TOKEN))" exec $(VENV)/bin/jupyter lab --no-browser --allow-root \
		--ServerApp.ip=$(LAB_IP) --ServerApp.port=$(LAB_PORT) --ServerApp.port_retries=0 \
		--ServerApp.root_dir=notebooks

test: provision
	$(VENV)/bin/pytest -q --durations=15 $(PYTEST_ARGS)

doctor: provision
	@$(VENV)/bin/netsprint doctor

release-check: provision
	$(VENV)/bin/netsprint release --check

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis src/*.egg-info
	find . -name __pycache__ -type d -not -path './notebooks/*' -prune -exec rm -rf {} +
