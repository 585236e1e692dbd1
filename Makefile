# sparc — two commands: `make run` (boot the default guest and open the TUI) and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
AGENT := .build-agent/release/sparc-agent
GUEST := build/guest
VERSION := $(shell cat VERSION)
PACKAGE := build/sparc-guest_$(VERSION)_amd64.deb
DEBIAN_GUEST := build/guest-debian
SPARC := .build/debug/sparc
BUILT := .build/debug/.sparc-built-with-tests
RELEASE := .build/release
PREFIX ?= /usr/local
# What 'make install' installs: the release build; CONFIG=debug installs the debug build
# already made (the install test in 'make test' does, to keep CI short), GUEST_IMAGES which images.
CONFIG ?= release
INSTALL_BIN = .build/$(CONFIG)
GUEST_IMAGES ?= guest guest-debian
APT_PACKAGES := qemu-system-x86 qemu-utils busybox-static linux-image-amd64 linux-headers-amd64 \
	libncurses-dev libssl-dev libzstd-dev libnbd-dev libyara-dev yara libhyperscan-dev libvirt-dev libvirt-daemon-system libvirt-clients pkg-config tmux cpio e2fsprogs kmod xz-utils zstd ripgrep gcc libc6-dev make binutils bc \
	debootstrap dpkg-dev util-linux fdisk openssh-client time
SWIFT_SOURCES := $(shell find Sources -name '*.swift' -o -name '*.h' -o -name '*.modulemap') Package.swift
AGENT_SOURCES := $(shell find Sources/sparc-agent Sources/GuestProcfs Sources/GuestQuery Sources/SparcSupport Sources/CSparcGuest Sources/CSparcSupport -type f) Package.swift
GUEST_INPUTS := Guest/build-image.sh $(shell find Guest/rootfs Guest/helper Guest/tools -type f)

.PHONY: all deps build release install install-guests uninstall guest guest-images guest-package guest-debian run test check unit e2e bench screenshots clean help

all: build guest

help:
	@echo "make run    install what is missing, build, boot the default guest, open the TUI"
	@echo "make test   the same set-up, then every unit and end-to-end test"
	@echo "make check  the inner loop: build, then every unit test (no VM)"
	@echo "make bench  checkpoint/restore benchmark against QEMU's own save"
	@echo "make guest  (re)build the default guest image in $(GUEST)"
	@echo "make guest-package  the guest package $(PACKAGE) (agent, DKMS helper, systemd unit)"
	@echo "make guest-debian   a Debian 12 guest with systemd, sshd and the package, in $(DEBIAN_GUEST)"
	@echo "make install [PREFIX=/usr/local]   release build, man pages, completions, guest images; make uninstall"

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

build: deps $(BUILT)

# The binaries users run: optimised (search is ~5x faster than the debug build).
release: deps
	$(SWIFT) build -c release --product sparc
	$(SWIFT) build -c release --product sparc-rsdmd

# Installs sparc, its RSDM daemon, man pages (one per sub-command), shell completions, the
# commit it was built from and the guest images built so far. DESTDIR stages a package.
# Builds and installs the default guest too (an installed sparc must boot something); the
# Debian guest when it is built, else a line on how to add it ('install-guests').
install: $(if $(filter debug,$(CONFIG)),build,release) guest
	$(SWIFT) build --product generate-manual
	rm -rf .build/man && mkdir -p .build/man
	.build/debug/generate-manual $(INSTALL_BIN)/sparc --multi-page --date $$(git log -1 --format=%cs 2>/dev/null || date +%F) \
		--output-directory .build/man
	sed -i '/^\.Sh "EXIT STATUS"$$/{N;d;}' .build/man/sparc.1
	{ echo; cat man/sparc.sections.mdoc; } >> .build/man/sparc.1
	{ echo; $(INSTALL_BIN)/sparc tui --keys-manual; } >> .build/man/sparc.tui.1
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/libexec/sparc $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/sparc $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 0755 $(INSTALL_BIN)/sparc $(DESTDIR)$(PREFIX)/bin/sparc
	install -m 0755 $(INSTALL_BIN)/sparc-rsdmd $(DESTDIR)$(PREFIX)/libexec/sparc/sparc-rsdmd
	install -m 0644 .build/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	$(INSTALL_BIN)/sparc --generate-completion-script bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/sparc
	$(INSTALL_BIN)/sparc --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_sparc
	$(INSTALL_BIN)/sparc --generate-completion-script fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/sparc.fish
	git rev-parse --short HEAD > $(DESTDIR)$(PREFIX)/share/sparc/commit 2>/dev/null || rm -f $(DESTDIR)$(PREFIX)/share/sparc/commit
	@$(MAKE) --no-print-directory install-guests
	@echo "installed sparc $$($(DESTDIR)$(PREFIX)/bin/sparc --version | cut -d' ' -f2-) in $(DESTDIR)$(PREFIX)"

# Copies the built guest images where an installed sparc looks (PREFIX/share/sparc/GUEST).
install-guests:
	install -d $(DESTDIR)$(PREFIX)/share/sparc
	@for g in $(GUEST_IMAGES); do \
		if [ -f build/$$g/vmlinuz ]; then rm -rf $(DESTDIR)$(PREFIX)/share/sparc/$$g; cp -r build/$$g $(DESTDIR)$(PREFIX)/share/sparc/$$g; echo "installed the $$g image"; fi; \
	done
	@if [ ! -f $(DEBIAN_GUEST)/disk.qcow2 ]; then \
		echo "the Debian guest is not built, so not installed: 'make guest-debian install-guests PREFIX=$(PREFIX)' adds it (debootstrap, about 10 minutes)"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/sparc $(DESTDIR)$(PREFIX)/share/man/man1/sparc.1 $(DESTDIR)$(PREFIX)/share/man/man1/sparc.*.1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/sparc $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_sparc \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/sparc.fish
	rm -rf $(DESTDIR)$(PREFIX)/libexec/sparc $(DESTDIR)$(PREFIX)/share/sparc

# A stamp of its own: a plain 'swift build' makes .build/debug/sparc newer than the sources
# without building the tests, which must not look done.
$(BUILT): $(SWIFT_SOURCES) $(shell find Tests -name '*.swift')
	$(SWIFT) build --build-tests
	@touch $@

$(AGENT): $(AGENT_SOURCES)
	$(SWIFT) build -c release --static-swift-stdlib --product sparc-agent -Xswiftc -static-executable --scratch-path .build-agent
	@# The agent links FoundationEssentials only: a plain 'import Foundation' in a module it
	@# uses pulls in ICU's data (the agent triples, the guest's initramfs with it, and a small
	@# guest runs out of memory). Refuse such a build with the reason.
	@if nm $@ 2>/dev/null | grep -qi icudt; then echo "sparc-agent links full Foundation (ICU): a module it uses imports Foundation without the FoundationEssentials branch" >&2; rm -f $@; exit 1; fi
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
# The release build, as an installed sparc is; bundles go to sparc's bundle directory.
run: release guest
	@if $(RELEASE)/sparc vm status >/dev/null 2>&1; then \
		$(RELEASE)/sparc tui; \
	else \
		$(RELEASE)/sparc vm start && { $(RELEASE)/sparc tui; status=$$?; $(RELEASE)/sparc vm stop; exit $$status; }; \
	fi

# Line-buffered, so a log (CI's) shows each test as it starts, not 4 KiB later; bounded, so a
# hang the per-test watchdogs miss ends as a failure with its log, not as CI's own timeout.
SWIFT_TEST = timeout --kill-after=60 4500 stdbuf -oL -eL $(SWIFT) test --skip-build --disable-swift-testing

# The host build and the two guest images are built side by side: the Debian image spends
# much of its time waiting on debootstrap's downloads.
# The host's own files (accounts, sudo, SSH keys) are digested before the tests and checked
# after, whatever the tests' outcome: a run that changed one fails and names it.
test: deps
	$(MAKE) --no-print-directory -j2 $(BUILT) guest-images
	@guard=$$(mktemp /tmp/sparc-host-guard.XXXXXX); scripts/host-guard.sh record $$guard || exit 2; \
	scripts/run-tests.sh && scripts/test-install.sh; status=$$?; \
	scripts/host-guard.sh check $$guard || status=1; rm -f $$guard; exit $$status

guest-images: $(GUEST)/initrd.img $(DEBIAN_GUEST)/disk.qcow2

# The inner loop: every test that needs no VM (no guest image is built), the fuzzers at
# 1,000 cases each (10,000 in 'make test').
check: build
	SPARC_FUZZ_CASES=1000 $(SWIFT_TEST) --skip EndToEndTests

unit: check

e2e: build guest guest-debian
	$(SWIFT_TEST) --filter EndToEndTests

bench: deps guest guest-debian
	bench/checkpoint
	bench/checkpoint --guest debian
	bench/search
	bench/scan
	bench/effectiveness
	bench/effectiveness --guest debian
	bench/libvirt
	bench/store
	bench/pause

# PNG pictures of each TUI screen from a real run (python3-pil, fonts-dejavu-core).
screenshots: build guest
	@dpkg-query -W python3-pil fonts-dejavu-core >/dev/null 2>&1 || { sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; $$sudo apt-get install -y -qq python3-pil fonts-dejavu-core >/dev/null; }
	scripts/screenshots.sh

clean:
	rm -rf .build .build-agent build
