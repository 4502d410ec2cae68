# build-distro: common tasks. `make help` lists them and the variables below (`#:` lines).
#:   RECIPE=debian-trixie    recipe name or path (distro, publish, security)
#:   OUT=dist                where builds go
#:   DISTRO=OUT/NAME.tar.gz  the archive check, boot and security work on
#:   TO=all                  storage containers to push to: all, or UID[,UID]
#:   PROFILE=release         release, or debug to reuse the test build
#:   STORAGE=UID             security: the storage container holding the published version
#:   PUBLISHED=PATH          security: that version's path (e.g. debian-trixie-0123456789ab);
#:                           unset: the local DISTRO is checked instead
#:   CONTAINERS='UID UID'    security: containers switched to the new version (on STORAGE's
#:                           server); unset: none is switched
#:   SSH='--identity KEY'    security: ssh flags for outdated, push and gc (--identity,
#:                           --ssh-option K=V, --ssh-host, --ssh-port)
#:   TRANSPORT=ssh           security: push and gc transport (ssh, rsync, local:DIR)
#:   KEEP=3                  security: versions per path that gc keeps
RECIPE ?= debian-trixie
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
# The security loop (README: "Keeping a custom distro secure").
STORAGE ?=
PUBLISHED ?=
CONTAINERS ?=
SSH ?=
TRANSPORT ?= ssh
KEEP ?= 3
OUTDATED_ON := $(if $(PUBLISHED),--to $(STORAGE) --path $(PUBLISHED) $(SSH),$(DISTRO))

.PHONY: help build test bench distro check boot publish audit security clean

help: ## list the targets and their variables
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 10
	@printf '\nvariables (make TARGET VAR=value):\n'
	@sed -n 's/^#: //p' $(MAKEFILE_LIST)

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

audit: build ## every custom distro: support window, pending fixes with CVE IDs, users (API: UWSGI_IT_*)
	$(BIN) distros audit $(SSH)

# With PUBLISHED, the fleet's audit comes first (a report: 1 goes on, 2 stops); then
# outdated exits 0 (nothing pending: stop), 1 (a security fix is out, or the release is
# past its end of life: rebuild and roll out) or 2 (it could not tell: stop and fail,
# nothing is rebuilt). Assigning needs jq.
security: build ## rebuild, push, switch and gc when outdated finds a security fix (see variables)
	@$(if $(PUBLISHED),rc=0; $(BIN) distros audit $(SSH) || rc=$$?; \
	if [ $$rc -ge 2 ]; then echo "security: audit failed (exit $$rc): nothing rebuilt" >&2; exit $$rc; fi;) \
	rc=0; $(BIN) outdated $(OUTDATED_ON) || rc=$$?; \
	if [ $$rc = 0 ]; then echo 'security: nothing pending from a security suite'; exit 0; fi; \
	if [ $$rc != 1 ]; then echo "security: outdated failed (exit $$rc), nothing rebuilt" >&2; exit $$rc; fi; \
	set -e; \
	$(BIN) build $(RECIPE) --out $(OUT); \
	$(BIN) check $(DISTRO); \
	$(BIN) push $(DISTRO) --to $(TO) --transport $(TRANSPORT) $(SSH) --yes --json > $(OUT)/push.json; \
	echo "security: pushed as $$(jq -r .path $(OUT)/push.json) (the next run's PUBLISHED)"; \
	if [ -n '$(CONTAINERS)' ]; then \
	  id=$$(jq -r '.targets[] | select(.uid == $(or $(STORAGE),0)) | .distro_id // empty' $(OUT)/push.json); \
	  test -n "$$id" || { echo 'security: no entry pushed to STORAGE=$(STORAGE) (TO=$(TO)): set STORAGE to the containers'"'"' storage container' >&2; exit 1; }; \
	  $(BIN) distros assign $(CONTAINERS) --distro $$id --yes; \
	fi; \
	$(BIN) distros gc --keep $(KEEP) --transport $(TRANSPORT) $(SSH) --yes

clean: ## remove build outputs
	cargo clean
	rm -rf $(OUT)
