# sparc — two commands: `make run` (boot the default guest and open the TUI) and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
AGENT := .build-agent/release/sparc-agent
GUEST := build/guest
VERSION := $(shell cat VERSION)
PACKAGE := build/sparc-guest_$(VERSION)_amd64.deb
DEBIAN_GUEST := build/guest-debian
SPARC := .build/debug/sparc
APT_PACKAGES := qemu-system-x86 qemu-utils busybox-static linux-image-amd64 linux-headers-amd64 \
	libncurses-dev libssl-dev pkg-config tmux cpio e2fsprogs kmod xz-utils zstd ripgrep gcc libc6-dev make binutils bc \
	debootstrap dpkg-dev util-linux fdisk openssh-client
SWIFT_SOURCES := $(shell find Sources -name '*.swift' -o -name '*.h' -o -name '*.modulemap') Package.swift
AGENT_SOURCES := $(shell find Sources/sparc-agent Sources/GuestQuery Sources/SparcSupport -name '*.swift') Package.swift
GUEST_INPUTS := Guest/build-image.sh $(shell find Guest/rootfs Guest/helper Guest/tools -type f)

.PHONY: all deps build guest guest-package guest-debian run test unit e2e bench screenshots clean help

all: build guest

help:
	@echo "make run    install what is missing, build, boot the default guest, open the TUI"
	@echo "make test   the same set-up, then every unit and end-to-end test"
	@echo "make bench  checkpoint/restore benchmark against QEMU's own save"
	@echo "make guest  (re)build the default guest image in $(GUEST)"
	@echo "make guest-package  the guest package $(PACKAGE) (agent, DKMS helper, systemd unit)"
	@echo "make guest-debian   a Debian 12 guest with systemd, sshd and the package, in $(DEBIAN_GUEST)"

# Installs missing Debian packages (as root, or through sudo).
deps:
	@command -v $(SWIFT) >/dev/null || { echo "make: the Swift toolchain ($(SWIFT)) is not in PATH" >&2; exit 2; }
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "installing: $$missing"; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# QEMU drops to this unprivileged user once it has opened its files (sparc runs it with -runas).
	@if [ "$$(id -u)" = 0 ] && ! id sparc-qemu >/dev/null 2>&1; then \
		useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sparc-qemu; \
	fi

build: deps $(SPARC)

$(SPARC): $(SWIFT_SOURCES)
	$(SWIFT) build --build-tests
	@touch $@

$(AGENT): $(AGENT_SOURCES)
	$(SWIFT) build -c release --static-swift-stdlib --product sparc-agent -Xswiftc -static-executable --scratch-path .build-agent
	@touch $@

guest: deps $(GUEST)/initrd.img

$(GUEST)/initrd.img: $(AGENT) $(GUEST_INPUTS)
	Guest/build-image.sh $(GUEST) $(AGENT)

guest-package: deps $(PACKAGE)

$(PACKAGE): $(AGENT) VERSION $(shell find Guest/package Guest/helper -type f)
	Guest/package/build-package.sh build $(AGENT) $(VERSION)

guest-debian: deps $(DEBIAN_GUEST)/disk.qcow2

$(DEBIAN_GUEST)/disk.qcow2: $(PACKAGE) Guest/build-debian.sh Guest/tools/sparc-probe.c
	Guest/build-debian.sh $(DEBIAN_GUEST) $(PACKAGE)

# Boots the default guest (unless it already runs) and opens the TUI; stops it on exit if it started it here.
run: build guest
	@if $(SPARC) vm status >/dev/null 2>&1; then \
		$(SPARC) tui; \
	else \
		$(SPARC) vm start && { $(SPARC) tui; status=$$?; $(SPARC) vm stop; exit $$status; }; \
	fi

test: build guest guest-debian
	$(SWIFT) test --skip-build --disable-swift-testing

unit: build
	$(SWIFT) test --skip-build --disable-swift-testing --skip EndToEndTests

e2e: build guest guest-debian
	$(SWIFT) test --skip-build --disable-swift-testing --filter EndToEndTests

bench: deps guest guest-debian
	bench/checkpoint
	bench/checkpoint --guest debian
	bench/search
	bench/effectiveness
	bench/effectiveness --guest debian

# PNG pictures of each TUI screen from a real run (python3-pil, fonts-dejavu-core).
screenshots: build guest
	@dpkg-query -W python3-pil fonts-dejavu-core >/dev/null 2>&1 || { sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; $$sudo apt-get install -y -qq python3-pil fonts-dejavu-core >/dev/null; }
	scripts/screenshots.sh

clean:
	rm -rf .build .build-agent build
