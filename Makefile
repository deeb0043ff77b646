# The two commands the README opens with: `make demo` and `make test`.
.PHONY: setup demo test check sanity lint unit

setup:  ## install Debian packages and this checkout (idempotent)
	bash scripts/setup.sh

demo: setup  ## the self-healing demo on embedded defaults
	selfheal demo

test: setup  ## every quality gate and the whole test suite
	bash scripts/check.sh

check:  ## the gates and tests without the setup step
	bash scripts/check.sh

sanity:
	bash scripts/sanity.sh

lint:
	ruff check . && ruff format --check . && ansible-lint -q

unit:
	python3 -m pytest tests/unit
