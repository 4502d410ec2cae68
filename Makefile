# build-distro: common tasks. `make help` lists them.
RECIPE ?= debian-bookworm
OUT ?= dist
# The distro `check` and `boot` work on: the archive `make distro` made.
DISTRO ?= $(OUT)/$(RECIPE).tar.gz
TO ?= all
BIN := target/release/build-distro

.PHONY: help build test bench distro check boot publish clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 10

build: ## build the release binary
	cargo build --release --locked

test: ## run every test (installs and starts what tests need)
	bash scripts/test.sh

bench: ## measure against docker export | gzip, pigz, tar (scripts/bench.sh)
	bash scripts/bench.sh

distro: build ## build a distro: make distro RECIPE=name-or-path [OUT=dist]
	$(BIN) build $(RECIPE) --out $(OUT)

check: build ## check a distro: make check [DISTRO=dist/x.tar.gz] (builds it if missing)
	@test -e $(DISTRO) || $(MAKE) distro
	$(BIN) check $(DISTRO)

boot: build ## boot a distro as the platform would: make boot [DISTRO=…] (root)
	@test -e $(DISTRO) || $(MAKE) distro
	$(BIN) boot $(DISTRO)

publish: build ## build and publish: make publish RECIPE=… TO=all|UID (API settings from UWSGI_IT_*)
	$(BIN) build $(RECIPE) --out $(OUT) --publish --to $(TO)

clean: ## remove build outputs
	cargo clean
	rm -rf $(OUT)
