import SparcSupport

/// Why a bundle cannot be written, read or trusted: the cases a caller or a test tells apart,
/// each with the one line the operator reads. A bundle that is damaged or not what its manifest
/// says is a "no" (exit 1); a path that holds no bundle, or cannot take one, is a usage error (2).
public enum BundleError: UserFacingError, Equatable {
    /// Nothing at the path.
    case notFound(path: String)
    /// Something at the path, but not a bundle (`why` says what it is).
    case notABundle(path: String, why: String)
    /// The manifest cannot be read, parsed or trusted (its message names manifest.json).
    case badManifest(String)
    /// A manifest of a format or version this sparc does not read (its message names the fix).
    case unsupported(String)
    /// A member the manifest lists is not in the bundle.
    case missingMember(String)
    /// A member is not what the manifest says of it (its size, its type).
    case damaged(member: String, why: String)
    /// A member's bytes do not match their digest in the manifest.
    case tampered(member: String)
    /// The path cannot take a new bundle (`why` names the fix).
    case badOutput(String)

    public var description: String {
        switch self {
        case .notFound(let path): return "no bundle at \(path)"
        case .notABundle(let path, let why): return "\(path) \(why)"
        case .badManifest(let message), .unsupported(let message): return message
        case .missingMember(let name): return "bundle has no \(name)"
        case .damaged(let member, let why): return "\(member): \(why)"
        case .tampered(let member): return "\(member) does not match its digest in the manifest: bundle is damaged or tampered"
        case .badOutput(let why): return why
        }
    }

    public var exitCode: Int32 {
        switch self {
        case .notFound, .notABundle, .badOutput, .unsupported: return 2
        case .badManifest, .missingMember, .damaged, .tampered: return 1
        }
    }
}
