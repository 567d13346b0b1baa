# certctl: the two commands a newcomer runs are `make demo` and `make test` (see README.md).
GO        ?= go
BIN       := bin/certctl
DEMO_DIR  ?= _out/demo-node
# Binaries the integration tests run (real kubeadm, kube-apiserver, etcd, controller-manager).
TEST_K8S_BINS := kubeadm kube-apiserver kube-controller-manager kube-scheduler etcd

.PHONY: all build demo test unit lint k8s-bins bench e2e clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/certctl

# Builds certctl, writes a sandbox kubeadm node with the field cases' faults, inspects it.
demo: build
	rm -rf $(DEMO_DIR)
	./$(BIN) sandbox create $(DEMO_DIR) --faults all
	./$(BIN) --root $(DEMO_DIR) inspect --check-san 10.2.1.139 || true
	@echo
	@echo "Exit code of inspect: 0 healthy, 1 warnings, 2 critical (this tree is meant to be critical)."

# Everything: gofmt, go vet, the Kubernetes binaries (cached under ~/.cache/certctl), all tests.
test: lint k8s-bins
	$(GO) test -count=1 -timeout 40m ./...

unit: lint
	$(GO) test -count=1 -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

k8s-bins:
	hack/build-k8s.sh $(TEST_K8S_BINS)

bench: build k8s-bins
	bench/run.sh

# End to end: renew + restart + rollback + a kill while a manifest is staged, on a node whose
# static pods run the real etcd, kube-apiserver, controller-manager and scheduler under the
# stand-in kubelet (internal/testenv); these also run in `make test`.
e2e: k8s-bins
	$(GO) test -count=1 -v -run 'TestRenewThenRestart|TestRollbackBrokenCertificate|TestKilledWhileStaged' ./pkg/restart

clean:
	rm -rf bin _out
