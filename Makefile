# PicoMDM build and test entry points. `make test` is the one command that
# runs every test (it brings up the local databases when they are installed).

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/picomdm/picomdm/cmd/picomdm/app.Version=$(VERSION)

.PHONY: all build test vet fmt bench run clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

run:
	$(GO) run ./cmd/picomdm -dev

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1)

# test runs every test, then every benchmark of the in-process hot paths once
# (-benchtime 1x), so a benchmark that breaks fails CI too; `make bench`
# measures them properly.
test: vet
	./tools/testenv.sh $(GO) test -race -count=1 ./...
	$(GO) test -run '^$$' -bench . -benchtime 1x ./push/apns ./storage/file ./storage/inmem ./mdm ./http/auth ./http/mdm ./http/observe

bench:
	./tools/testenv.sh $(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
