// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "sparc",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "sparc", targets: ["sparc"]),
        .executable(name: "sparc-agent", targets: ["sparc-agent"]),
        .executable(name: "sparc-rsdmd", targets: ["sparc-rsdmd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // TOML for the configuration file (a maintained parser: toml++ underneath).
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // Plumbing shared by host and guest: sockets, subprocesses, errors, file helpers.
        .target(name: "SparcSupport", dependencies: ["CSparcSupport"]),
        // cmsg plumbing (descriptor passing) that Swift cannot express.
        .target(name: "CSparcSupport"),
        // libcrypto (OpenSSL) for SHA-256 with the CPU's SHA extensions.
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CNCurses", providers: [.apt(["libncurses-dev"])]),
        // zstd (Debian's libzstd-dev): the checkpoint store's chunks are compressed where it pays.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(name: "SnapshotModel", dependencies: ["SparcSupport", "COpenSSL"]),
        .target(name: "GuestQuery", dependencies: ["SparcSupport"]),
        // The guest kernel's own records of free memory and swap, read from paused RAM.
        .target(name: "GuestMemory", dependencies: ["GuestQuery", "SnapshotModel", "SparcSupport"]),
        // libnbd (Debian's libnbd-dev): a frozen disk read from QEMU's NBD export, with its dirty bitmap.
        .target(name: "CNBD", linkerSettings: [.linkedLibrary("nbd")]),
        .target(name: "Hypervisor", dependencies: ["SparcSupport", "CNBD"]),
        // Hyperscan (Debian's libhyperscan-dev): regular expressions and the credential rules' prefilter in one pass.
        .systemLibrary(name: "CHyperscan", providers: [.apt(["libhyperscan-dev"])]),
        // SIMD scan loop of the forensic search.
        .target(name: "CHexScan"),
        .target(name: "HexView", dependencies: ["CHexScan", "CHyperscan", "SparcSupport", "SnapshotModel"]),
        // libyara (Debian's libyara-dev) behind a narrow C face: its macros do not import.
        .target(name: "CYaraScan", linkerSettings: [.linkedLibrary("yara")]),
        // Credential scanning: built-in rules and the user's YARA rules over memory images.
        .target(name: "SecretScan", dependencies: ["CYaraScan", "CHyperscan", "COpenSSL", "HexView", "SnapshotModel", "SparcSupport"]),
        // libvirt's C library (Debian's libvirt-dev) and the domain definitions sparc needs.
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),
        .target(name: "Libvirt", dependencies: ["CLibvirt", "Hypervisor", "SparcSupport"]),
        // What outlives VMs and bundles on this host: its key, the VMs' histories, the
        // rollback-sensitive data and the server of that port (all sparc-rsdmd links).
        .target(name: "HostState", dependencies: ["SparcSupport", "SnapshotModel"]),
        // The content-addressed checkpoint store: chunks keyed, deduplicated, compressed, sealed.
        // Content-defined chunk boundaries (a gear hash), in C: it runs over every byte of a disk.
        .target(name: "CChunker", cSettings: [.unsafeFlags(["-O2"])]),
        .target(name: "CheckpointStore", dependencies: ["SnapshotModel", "SparcSupport", "COpenSSL", "CZstd", "CChunker"]),
        .target(
            name: "SparcEngine",
            dependencies: ["SparcSupport", "SnapshotModel", "GuestQuery", "GuestMemory", "Hypervisor", "HexView", "SecretScan", "Libvirt", "HostState", "CheckpointStore", .product(name: "TOMLKit", package: "TOMLKit")]),
        .target(name: "SparcTUI", dependencies: ["CNCurses", "SparcEngine", "GuestQuery", "HexView", "SparcSupport", "SnapshotModel", "SecretScan", "CheckpointStore"]),
        .target(name: "CSparcGuest"),
        .target(name: "GuestProcfs", dependencies: ["GuestQuery", "SparcSupport"]),
        .executableTarget(name: "sparc-agent", dependencies: ["GuestProcfs", "GuestQuery", "SparcSupport", "CSparcGuest"]),
        .executableTarget(
            name: "sparc",
            dependencies: [
                "SparcEngine", "SparcTUI", "HexView", "Hypervisor", "SnapshotModel", "GuestQuery", "SparcSupport", "SecretScan", "Libvirt",
                "CheckpointStore", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // The host side of a VM's rollback-sensitive data port, supervised; started detached.
        .executableTarget(name: "sparc-rsdmd", dependencies: ["HostState", "SparcSupport"]),
        // Benchmarks against QEMU's own save and restore (make bench); not a test.
        .executableTarget(
            name: "sparc-bench",
            dependencies: [
                "SparcEngine", "Hypervisor", "SnapshotModel", "GuestQuery", "SparcSupport", "CheckpointStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Fixtures the test targets share (the fuzzers' mutator).
        .target(name: "TestSupport", dependencies: ["SparcSupport", "SnapshotModel"], path: "Tests/TestSupport"),
        .testTarget(name: "SparcSupportTests", dependencies: ["SparcSupport", "TestSupport"]),
        .testTarget(name: "SnapshotModelTests", dependencies: ["SnapshotModel", "SparcSupport", "TestSupport"]),
        .testTarget(name: "GuestQueryTests", dependencies: ["GuestQuery", "SparcSupport", "TestSupport"]),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory", "GuestQuery", "SnapshotModel"]),
        .testTarget(name: "GuestProcfsTests", dependencies: ["GuestProcfs", "GuestQuery"]),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor", "SparcSupport"]),
        .testTarget(name: "LibvirtTests", dependencies: ["Libvirt", "SparcSupport"]),
        .testTarget(name: "HexViewTests", dependencies: ["HexView", "SparcSupport", "SnapshotModel", "TestSupport"]),
        .testTarget(name: "CheckpointStoreTests", dependencies: ["CheckpointStore", "SnapshotModel", "SparcSupport", "TestSupport"]),
        .testTarget(name: "SecretScanTests", dependencies: ["SecretScan", "SparcSupport"]),
        .testTarget(name: "SparcTUITests", dependencies: ["SparcTUI", "HexView", "GuestQuery", "SnapshotModel", "SparcEngine", "SecretScan"]),
        .testTarget(name: "SparcEngineTests", dependencies: ["SparcEngine", "SparcSupport", "SnapshotModel", "SecretScan", "HexView", "Libvirt", "TestSupport"]),
        .testTarget(name: "EndToEndTests", dependencies: ["SnapshotModel", "SparcSupport", "HexView", "SparcEngine", "GuestQuery", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
