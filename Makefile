# The two commands of the README: `make up` (run it) and `make test` (prove it). Both install what is missing.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: up test test-long install browser deploy-tools test-tools stack stop lint typecheck pytest bench bench-smoke soak sdk clean

install:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@uv sync --frozen --quiet || uv sync --quiet
	@scripts/console-assets.sh

# Debian's chromium, which the console's browser tests (tests/console) drive; only targets that run them need it.
browser:
	@scripts/console-assets.sh --browser

# The pinned kustomize tests/deploy renders the overlays with (built once); only targets that run the tests need it.
deploy-tools:
	@deploy/tools.sh

# The OpenID provider the single sign-on tests sign in at (tests/oidc_provider: npm's oidc-provider, from its lock).
test-tools:
	@tests/oidc_provider/install.sh

stack:
	@scripts/stack.sh start

up: install stack
	@scripts/up.sh

stop:
	@scripts/stack.sh stop

lint: install
	uv run --frozen ruff check .
	uv run --frozen ruff format --check .

typecheck: install
	uv run --frozen mypy libs/guard/src libs/common/src sdk/python/src services/*/src apps/*/src tests bench

pytest: install browser deploy-tools test-tools stack
	uv run --frozen pytest $(PYTEST_ARGS)

test: install browser deploy-tools test-tools stack
	uv run --frozen ruff format --check .
	uv run --frozen ruff check .
	uv run --frozen mypy libs/guard/src libs/common/src sdk/python/src services/*/src apps/*/src tests bench
	uv run --frozen pytest $(PYTEST_ARGS)

# The long mode: the chaos suite three times in a row (each run is a fresh pipeline), then everything else.
test-long: install browser deploy-tools test-tools stack
	CHAOS_ROUNDS=3 uv run --frozen pytest $(PYTEST_ARGS)

bench: install stack
	uv run --frozen python -m bench

bench-smoke: install stack
	uv run --frozen python -m bench --smoke

# The four services under a steady load for MINUTES (default 10): memory and consumer lag every 30 s.
soak: install stack
	uv run --frozen python -m bench.soak --minutes $(or $(MINUTES),10)

# The client SDK's wheels, to pip-install into an app's environment: the SDK and the guard it depends on.
SDK_DIST ?= dist
sdk: install
	uv build --package spendstream-guard --wheel -o $(SDK_DIST)
	uv build --package spendstream-sdk --wheel -o $(SDK_DIST)

clean:
	rm -rf .data .stack .venv
