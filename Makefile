# build-distro: common tasks. `make help` lists them.
RECIPE ?= debian-bookworm
OUT ?= dist
# The distro `check` and `boot` work on: the archive `make distro` made.
DISTRO ?= $(OUT)/$(notdir $(basename $(RECIPE:.toml=))).tar.gz
# TO=all, or storage uids separated by commas.
TO ?= all
PUBLISH_TO := $(if $(filter all,$(TO)),all,[$(TO)])
# PROFILE=debug reuses the test build (CI) instead of compiling a release binary.
PROFILE ?= release
BIN := target/$(PROFILE)/build-distro
CARGO_PROFILE := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: help build test bench distro check boot publish clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 10

build: ## build the binary (release; PROFILE=debug for the test build)
	cargo build $(CARGO_PROFILE) --locked

test: ## run every test (installs and starts what tests need)
	bash scripts/test.sh

bench: ## measure against docker export | gzip, pigz, tar (results: target/bench-results.json)
	bash scripts/bench.sh

distro: build ## build a distro: make distro RECIPE=name-or-path [OUT=dist]
	$(BIN) build $(RECIPE) --out $(OUT)

check: build ## check a distro: make check [DISTRO=dist/x.tar.gz] (builds it if missing)
	@test -e $(DISTRO) || $(MAKE) --no-print-directory distro
	$(BIN) check $(DISTRO)

boot: build ## boot a distro as the platform would: make boot [DISTRO=…] (root)
	@test -e $(DISTRO) || $(MAKE) --no-print-directory distro
	$(BIN) boot $(DISTRO)

publish: build ## build and publish: make publish RECIPE=… TO=all|UID[,UID] (API: UWSGI_IT_*)
	$(BIN) build $(RECIPE) --out $(OUT) --publish --set 'publish.to=$(PUBLISH_TO)'

clean: ## remove build outputs
	cargo clean
	rm -rf $(OUT)
