# sam build (BuildMethod: makefile, template.yaml) runs `make build-<LogicalId>`
# once per function, here at the repo root. Every call makes the one release
# build of all function crates (scripts/build-functions.sh: the first call
# compiles, later ones find everything up to date) and copies the function's
# bootstrap. <LogicalId> is the crate name in UpperCamelCase plus "Function"
# (mailmind::deploy::FunctionSpec::logical_id): CredentialsCheckFunction is
# functions/credentials-check.
#
# The architecture is MAILMIND_ARCH (arm64, the template's default, or
# x86_64); give the template's Architecture parameter the same value.
ROOT := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))

build-%Function:
	"$(ROOT)scripts/build-functions.sh"
	crate=$$(printf '%s' '$*' | sed -E 's/([a-z0-9])([A-Z])/\1-\2/g' | tr 'A-Z' 'a-z'); \
	cp "$(ROOT)target/lambda/$$crate/bootstrap" "$(ARTIFACTS_DIR)/bootstrap"
