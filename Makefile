# build-distro: common tasks. `make help` lists them.
RECIPE ?= debian-bookworm
OUT ?= dist
BIN := target/release/build-distro

.PHONY: help build test distro clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

build: ## build the release binary
	cargo build --release --locked

test: ## run every test (installs and starts what tests need)
	bash scripts/test.sh

distro: build ## build a distro: make distro RECIPE=name-or-path
	$(BIN) build $(RECIPE) --out $(OUT)

clean: ## remove build outputs
	cargo clean
	rm -rf $(OUT)
