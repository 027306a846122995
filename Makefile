# produktly-segment: the commands a developer and CI use.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin/produktly-segment

.PHONY: all build test unit demo bench faults faults-long vet fmt fuzz images kafka-image ci kafka-up kafka-down clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/produktly-segment

## test: the whole suite against a real Kafka (README's test command): in containers when
## Docker works (KAFKA_IMAGE=apache/kafka:4.1.2 to use the official image), else from jars
test:
	scripts/test.sh

## images: build the Kafka and service images locally (cached by input hash)
images:
	scripts/images.sh all

kafka-image:
	scripts/images.sh kafka

## ci: what CI runs on a fresh machine: installs Docker if needed, starts and stops dockerd
ci:
	bash .ci/run

## faults: the short fault profile against a 3-node Kafka cluster it starts and stops (docs/reliability.md);
## containers when Docker works, else the jar cluster
faults:
	scripts/faults.sh short

## faults-long: the profile whose figures docs/reliability.md publishes (~20 min, then FuzzMap for 10 min)
faults-long:
	scripts/faults.sh long

## unit: tests that need no broker
unit:
	$(GO) test -race ./mapping/... ./timestamp/... ./backoff/... ./sink/... ./integrations/... ./consumer/... ./deploy/... ./cmd/...

## bench: one replica against the kafka-go ceiling (docs/performance.md); ARGS="-records 200000"
bench:
	scripts/bench.sh $(ARGS)

## demo: the README's run command
demo:
	$(GO) run ./cmd/produktly-segment demo

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w .

## fuzz: the mapping fuzz target for longer (FUZZTIME=10m make fuzz)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzMap$$' -fuzztime $${FUZZTIME:-5m} ./mapping/

kafka-up:
	scripts/kafka.sh up single

kafka-down:
	scripts/kafka.sh down single

clean:
	rm -rf bin
