#!/usr/bin/env bash
# Renders every generated file from the declarations after a change to a
# function, a provider, a route, a wire type or template.base.yaml:
#   template.yaml            (template.base.yaml + shared/src/deploy/mod.rs + providers)
#   docs/openapi.json        (routes and wire types)
#   docs/asyncapi.yaml       (its provider enum)
# The tests fail while a committed file differs from what this renders.
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_TEMPLATE=1 cargo test -q -p mailmind-tests --test suite template::committed
UPDATE_OPENAPI=1 cargo test -q -p mailmind-tests --test suite openapi::committed
UPDATE_ASYNCAPI=1 cargo test -q -p mailmind-tests --test suite asyncapi::provider_enum
git status --short template.yaml docs/openapi.json docs/asyncapi.yaml
